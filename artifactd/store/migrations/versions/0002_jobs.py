"""repo_jobs: background forks and imports

Revision ID: 0002_jobs
Revises: 0001_core
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from artifactd.store.types import UTCDateTime


revision = '0002_jobs'
down_revision = '0001_core'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('repo_jobs',
    sa.Column('repo_id', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('owner', sa.String(length=160), nullable=False),
    sa.Column('heartbeat_at', UTCDateTime(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['repo_id'], ['repos.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('repo_id')
    )


def downgrade() -> None:
    op.drop_table('repo_jobs')
