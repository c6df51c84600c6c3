"""ORM models of the core: accounts, API tokens, namespaces, repos and repo tokens.

Later features add their own tables in their own modules and migrations; the columns
here are the ones the core services rely on.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from artifactd.store.types import UTCDateTime, utcnow


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(Base):
    """A control-plane credential. Only the SHA-256 digest of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: Permission group names, e.g. ["Artifacts Read", "Artifacts Edit"].
    permissions: Mapped[list] = mapped_column(JSON)
    #: None means every namespace of the account.
    namespaces: Mapped[list | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_on: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_on: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # -- identity (migration 0002_identity) --
    #: Owner: a user token (None: an account-owned token, managed by the account's admins).
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: Cloudflare-style policies (effect, permission_groups, resources); None: the legacy
    #: permissions/namespaces columns on account_id apply.
    policies: Mapped[list | None] = mapped_column(JSON, nullable=True)
    #: {"request_ip": {"in": [CIDR...], "not_in": [CIDR...]}}
    condition: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    modified_on: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Namespace(Base):
    __tablename__ = "namespaces"
    __table_args__ = (UniqueConstraint("account_id", "name_key", name="uq_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    #: Lower-cased name: names are unique regardless of case, and keep their case.
    name_key: Mapped[str] = mapped_column(String(63))
    jurisdiction: Mapped[str] = mapped_column(String(16), default="unrestricted")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (
        UniqueConstraint("namespace_id", "name_key", name="uq_repo_name"),
        Index("ix_repos_ns_created", "namespace_id", "created_at", "id"),
        Index("ix_repos_ns_updated", "namespace_id", "updated_at", "id"),
        Index("ix_repos_ns_pushed", "namespace_id", "last_push_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    name_key: Mapped[str] = mapped_column(String(63))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    default_branch: Mapped[str] = mapped_column(String(256), default="main")
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ready | importing | forking | failed
    status: Mapped[str] = mapped_column(String(16), default="ready")
    status_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Directory of the bare repository, relative to the repos dir.
    storage_path: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_push_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    namespace: Mapped[Namespace] = relationship(lazy="joined")


class RepoToken(Base):
    """A Git credential for exactly one repo. Only the SHA-256 of the secret is kept."""

    __tablename__ = "repo_tokens"
    __table_args__ = (Index("ix_repo_tokens_repo_created", "repo_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    repo_id: Mapped[str] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


__all__ = ["Base", "Account", "ApiToken", "Namespace", "Repo", "RepoToken"]

from artifactd.store import models_identity  # noqa: E402,F401  (identity tables)
from artifactd.store import models_jobs as _models_jobs  # noqa: E402,F401  (issue 3: fork/import jobs)
from artifactd.store import models_hardening  # noqa: E402,F401  (rate limits, server leases)
