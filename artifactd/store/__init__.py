"""Metadata store: SQLAlchemy models, engine and migrations."""
