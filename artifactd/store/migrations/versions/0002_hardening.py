"""rate-limit counters and server leases

Revision ID: 0002_hardening
Revises: 0001_core
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

from artifactd.store.types import UTCDateTime

revision = "0002_hardening"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window"),
    )
    op.create_table(
        "server_leases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("volume", sa.String(length=32), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_server_leases_volume", "server_leases", ["volume"])


def downgrade() -> None:
    op.drop_table("server_leases")
    op.drop_table("rate_limit_counters")
