"""Alembic environment: runs against the engine handed in by ``artifactd.store.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from artifactd.store.db import normalize_url
from artifactd.store.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # plain `alembic` command line: take the URL from the config
        engine = create_engine(normalize_url(config.get_main_option("sqlalchemy.url")))
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several server processes may start at once: one migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_lock(727274)")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
            connection.commit()


run()
