"""Namespaces: the naming and routing boundary inside an account."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from artifactd import validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.store.models import Namespace, Repo
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

JURISDICTIONS = ("unrestricted", "us", "eu", "fedramp")


def encode_cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError
        return data
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid("Invalid cursor.") from None


#: Built once: most requests look a namespace up.
_FIND = select(Namespace).where(Namespace.account_id == bindparam("account_id"),
                                Namespace.name_key == bindparam("name_key"))


class NamespaceService:
    def __init__(self, core: Core):
        self.core = core

    @staticmethod
    def find(s: Session, account_id: str, name: str) -> Namespace | None:
        return s.scalars(_FIND, {"account_id": account_id, "name_key": name.lower()}).first()

    def get_or_create(self, s: Session, account_id: str, name: str) -> Namespace:
        """Implicit creation, as a repo create does: unrestricted jurisdiction."""
        validation.namespace_name(name)
        ns = self.find(s, account_id, name)
        if ns is not None:
            return ns
        try:
            with s.begin_nested():
                ns = Namespace(account_id=account_id, name=name, name_key=name.lower())
                s.add(ns)
            return ns
        except IntegrityError:  # created concurrently
            ns = self.find(s, account_id, name)
            assert ns is not None
            return ns

    def require(self, s: Session, account_id: str, name: str) -> Namespace:
        validation.namespace_name(name)
        ns = self.find(s, account_id, name)
        if ns is None:
            raise not_found(f"Namespace not found: {name}.")
        return ns

    def create(self, account_id: str, name: str, jurisdiction: str | None = None) -> dict:
        validation.namespace_name(name)
        jurisdiction = "unrestricted" if jurisdiction is None else jurisdiction
        if jurisdiction not in JURISDICTIONS:
            raise invalid(f"Invalid jurisdiction: must be one of {', '.join(JURISDICTIONS)}.")
        try:
            with self.core.db.session() as s:
                if self.find(s, account_id, name) is not None:
                    raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"namespace already exists: {name}")
                ns = Namespace(account_id=account_id, name=name, name_key=name.lower(), jurisdiction=jurisdiction)
                s.add(ns)
                s.flush()
                return self.to_dict(ns, 0)
        except IntegrityError:
            raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"namespace already exists: {name}") from None

    def get(self, account_id: str, name: str) -> dict:
        with self.core.db.read() as s:
            ns = self.require(s, account_id, name)
            return self.to_dict(ns, self._repo_count(s, ns.id))

    def list(self, account_id: str, limit: int = 100, cursor: str | None = None,
             page: int | None = None, *, only: frozenset[str] | None = None,
             excluding: frozenset[str] = frozenset()) -> tuple[list[dict], str | None, int]:
        """Cursor pagination by id; ``page`` (what wrangler sends) selects offset pages.
        ``only`` / ``excluding`` (lower-case names): the namespaces a narrowed credential
        may see (``Principal.namespace_scope``); the others are neither listed nor counted."""
        validation.integer(limit, "limit", 1, 200, message="Invalid limit: must be between 1 and 200.")
        if page is not None:
            validation.integer(page, "page", 1, 1_000_000)
        where = [Namespace.account_id == account_id]
        if only is not None:
            where.append(Namespace.name_key.in_(sorted(only)))
        if excluding:
            where.append(Namespace.name_key.not_in(sorted(excluding)))
        q = select(Namespace).where(*where).order_by(Namespace.id)
        if page is not None:
            q = q.offset((page - 1) * limit)
        elif cursor:
            after = decode_cursor(cursor).get("id")
            if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= validation.MAX_INT32:
                raise invalid("Invalid cursor.")
            q = q.where(Namespace.id > after)
        with self.core.db.read() as s:
            total = s.scalar(select(func.count()).select_from(Namespace).where(*where))
            rows = list(s.scalars(q.limit(limit + 1)))
            more = len(rows) > limit
            rows = rows[:limit]
            counts = dict(
                s.execute(
                    select(Repo.namespace_id, func.count())
                    .where(Repo.namespace_id.in_([r.id for r in rows]))
                    .group_by(Repo.namespace_id)
                ).all()
            ) if rows else {}
            items = [self.to_dict(r, counts.get(r.id, 0)) for r in rows]
        next_cursor = encode_cursor({"id": rows[-1].id}) if more and rows and page is None else None
        return items, next_cursor, total or 0

    def delete(self, account_id: str, name: str) -> None:
        """Delete an empty namespace. The row is locked before the repos are counted, so
        a repo created concurrently either counts (409) or fails its insert and is
        retried by its creator; the cascade never silently removes a new repo."""
        with self.core.db.session() as s:
            ns = self.require(s, account_id, name)
            # SQLite: take the database write lock now; PostgreSQL: FOR UPDATE conflicts
            # with the key-share lock that a concurrent repo insert holds on this row.
            s.execute(update(Namespace).where(Namespace.id == ns.id).values(updated_at=ns.updated_at))
            s.execute(select(Namespace.id).where(Namespace.id == ns.id).with_for_update())
            if self._repo_count(s, ns.id):
                raise ArtifactsError(
                    ErrorCode.CONFLICT, f"Namespace {name} still holds repos; delete them first.", status=409
                )
            s.delete(ns)

    @staticmethod
    def _repo_count(s: Session, namespace_id: int) -> int:
        return s.scalar(select(func.count()).select_from(Repo).where(Repo.namespace_id == namespace_id)) or 0

    @staticmethod
    def to_dict(ns: Namespace, repo_count: int) -> dict:
        from artifactd.store.types import isoformat

        return {
            "namespace": ns.name,
            "jurisdiction": ns.jurisdiction,
            "repo_count": repo_count,
            "created_at": isoformat(ns.created_at),
            "updated_at": isoformat(ns.updated_at),
        }

    @staticmethod
    def touch(ns: Namespace) -> None:
        ns.updated_at = utcnow()
