"""Repo-scoped Git tokens: mint, list, revoke, and check at the Git door.

A token is ``art_v1_<40 hex>?expires=<unix seconds>``. The part before ``?`` is the
secret; only its SHA-256 is stored; the suffix is informational and never trusted.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select

from artifactd import ids, validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.store.db import Executor
from artifactd.store.models import Namespace, Repo, RepoToken
from artifactd.store.types import isoformat, utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

TTL_MIN = 60
TTL_MAX = 31_536_000
TTL_DEFAULT = 86_400
SCOPES = ("read", "write")
STATES = ("active", "expired", "revoked", "all")

SECRET_RE = re.compile(r"^art_v(?:1_[0-9a-f]{40}|2_[xeuf]_[0-9a-f]{40})$")


def secret_of(token: str) -> str | None:
    """The secret part of a presented token, or None when it cannot be one of ours."""
    secret = token.split("?", 1)[0].strip()
    return secret if SECRET_RE.match(secret) else None


def validate_ttl(ttl: Any) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        kinds = {str: "a string", float: "a fraction", bool: "a boolean", list: "a list", dict: "an object"}
        got = "null" if ttl is None else kinds.get(type(ttl), type(ttl).__name__)
        raise ArtifactsError(ErrorCode.INVALID_TTL, f"Invalid TTL: must be a whole number of seconds, not {got}.")
    if not TTL_MIN <= ttl <= TTL_MAX:
        raise ArtifactsError(
            ErrorCode.INVALID_TTL, f"Invalid TTL {ttl}: must be between {TTL_MIN} and {TTL_MAX} seconds."
        )
    return ttl


def validate_scope(scope: Any) -> str:
    if scope not in SCOPES:
        raise invalid("Artifacts token scope must be read or write")
    return scope


def state_of(token: RepoToken, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return "active"


@dataclass(frozen=True)
class GitAccess:
    """What a valid repo token opens: one repo, one scope."""

    token_id: str
    scope: str
    repo_id: str
    storage_path: str
    read_only: bool
    status: str
    name: str
    default_branch: str


_INSERT = RepoToken.__table__.insert()
#: Built once: every Git request runs it (columns only, no ORM objects to build).
_GIT_ACCESS = (
    select(RepoToken.id.label("token_id"), RepoToken.scope, RepoToken.revoked_at, RepoToken.expires_at,
           Repo.id.label("repo_id"), Repo.storage_path, Repo.read_only, Repo.status, Repo.name, Repo.name_key,
           Repo.default_branch, Namespace.account_id, Namespace.name_key.label("ns_key"))
    .join(Repo, RepoToken.repo_id == Repo.id)
    .join(Namespace, Repo.namespace_id == Namespace.id)
    .where(RepoToken.digest == bindparam("digest"))
)


class RepoTokenService:
    def __init__(self, core: Core):
        self.core = core

    def mint(self, s: Executor, repo: Any, scope: Any = "write", ttl: Any = TTL_DEFAULT) -> tuple[RepoToken, str]:
        """Insert a token for ``repo`` (a Repo or a row: only its ``id`` is read)."""
        scope = validate_scope(scope)
        ttl = validate_ttl(ttl)
        secret = "art_v1_" + secrets.token_hex(20)
        now = utcnow().replace(microsecond=0)
        expires_at = now + dt.timedelta(seconds=ttl)
        values = {"id": ids.new_id(), "repo_id": repo.id, "digest": ids.digest(secret), "scope": scope,
                  "created_at": utcnow(), "expires_at": expires_at, "revoked_at": None}
        s.execute(_INSERT, values)  # a plain INSERT: no unit-of-work flush for a row nobody edits
        return RepoToken(**values), f"{secret}?expires={int(expires_at.timestamp())}"

    def create(self, account_id: str, namespace: str, repo_name: Any, scope: Any = "write",
               ttl: Any = TTL_DEFAULT) -> dict:
        """Mint a token for a ready repo; the plaintext is in this reply only."""
        if not isinstance(repo_name, str):
            raise invalid("repo is required and must be a string.")
        validate_scope(scope)
        validate_ttl(ttl)
        with self.core.db.transaction() as c:  # Core, not the ORM: see RepoService._insert
            repo = self.core.repos.require_ready_row(c, account_id, namespace, repo_name)
            row, plaintext = self.mint(c, repo, scope, ttl)
            return {"id": row.id, "plaintext": plaintext, "scope": row.scope, "expires_at": isoformat(row.expires_at)}

    def list(self, account_id: str, namespace: str, repo_name: str, *, state: str = "active",
             page: Any = 1, per_page: Any = 30) -> tuple[list[dict], dict]:
        if state not in STATES:
            raise invalid("Invalid state: must be active, expired, revoked or all.")
        page = validation.integer(page, "page", 1)
        per_page = validation.integer(per_page, "per_page", 1, 100)
        now = utcnow()
        with self.core.db.read() as s:
            repo = self.core.repos.require(s, account_id, namespace, repo_name)
            where = [RepoToken.repo_id == repo.id]
            if state == "active":
                where += [RepoToken.revoked_at.is_(None), RepoToken.expires_at > now]
            elif state == "expired":
                where += [RepoToken.revoked_at.is_(None), RepoToken.expires_at <= now]
            elif state == "revoked":
                where += [RepoToken.revoked_at.is_not(None)]
            total = s.scalar(select(func.count()).select_from(RepoToken).where(*where)) or 0
            rows = s.scalars(
                select(RepoToken).where(*where)
                .order_by(RepoToken.created_at.desc(), RepoToken.id.desc())
                .offset((page - 1) * per_page).limit(per_page)
            ).all()
            items = [self.to_dict(r, now) for r in rows]
        info = {
            "page": page, "per_page": per_page, "count": len(items), "total_count": total,
            "total_pages": max(1, math.ceil(total / per_page)),
        }
        return items, info

    def revoke(self, account_id: str, namespace: str, token_id: str) -> str:
        """Revoke by id within a namespace; effective on the next Git request."""
        validation.namespace_name(namespace)
        if not validation.TOKEN_ID_RE.match(token_id or ""):
            raise not_found(f"Token not found: {token_id}.")
        with self.core.db.session() as s:
            row = s.scalars(
                select(RepoToken)
                .join(Repo, RepoToken.repo_id == Repo.id)
                .join(Namespace, Repo.namespace_id == Namespace.id)
                .where(RepoToken.id == token_id, Namespace.account_id == account_id,
                       Namespace.name_key == namespace.lower())
            ).first()
            if row is None:
                raise not_found(f"Token not found: {token_id}.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return row.id

    def revoke_for_repo(self, account_id: str, namespace: str, repo_name: str, token_or_id: str) -> bool:
        """Binding form: by id or plaintext; False when unknown or already revoked."""
        secret = secret_of(token_or_id) if isinstance(token_or_id, str) else None
        if secret is None and not (isinstance(token_or_id, str) and validation.TOKEN_ID_RE.match(token_or_id)):
            raise invalid("Invalid tokenOrId: must be a token id or artifact token.")
        with self.core.db.session() as s:
            repo = self.core.repos.require(s, account_id, namespace, repo_name, ready=False)
            cond = RepoToken.digest == ids.digest(secret) if secret else RepoToken.id == token_or_id
            row = s.scalars(select(RepoToken).where(cond, RepoToken.repo_id == repo.id)).first()
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = utcnow()
            return True

    def authenticate_git(self, presented: str, account_id: str, namespace: str, repo_name: str) -> GitAccess | None:
        """The access a token grants on exactly this repo, or None (bad, expired, revoked,
        another repo's, or the repo does not exist: indistinguishable on purpose)."""
        secret = secret_of(presented)
        if secret is None:
            return None
        with self.core.db.read() as s:
            row = s.execute(_GIT_ACCESS, {"digest": ids.digest(secret)}).first()
        if row is None:
            return None
        if (
            row.revoked_at is not None
            or row.expires_at <= utcnow()
            or row.account_id != account_id
            or row.ns_key != namespace.lower()
            or row.name_key != repo_name.lower()
        ):
            return None
        return GitAccess(row.token_id, row.scope, row.repo_id, row.storage_path, row.read_only, row.status,
                         row.name, row.default_branch)

    @staticmethod
    def to_dict(row: RepoToken, now: dt.datetime) -> dict:
        return {
            "id": row.id,
            "scope": row.scope,
            "state": state_of(row, now),
            "created_at": isoformat(row.created_at),
            "expires_at": isoformat(row.expires_at),
        }
