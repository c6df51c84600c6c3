"""Repos: create, look up, list, delete; the metadata rules of every interface."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, literal, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from artifactd import ids, validation
from artifactd.errors import ArtifactsError, ErrorCode, invalid, not_found
from artifactd.services.namespaces import decode_cursor, encode_cursor
from artifactd.store.db import Executor
from artifactd.store.models import Namespace, Repo
from artifactd.store.types import isoformat, utcnow

if TYPE_CHECKING:
    from artifactd.services.apitokens import Principal
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.repos")

_INSERT = Repo.__table__.insert()
#: The namespace a creation goes to: two columns (an ORM object cost ~0.2 ms more).
_NAMESPACE = select(Namespace.id, Namespace.name).where(Namespace.account_id == bindparam("account_id"),
                                                        Namespace.name_key == bindparam("name_key"))
#: A repo by account, namespace and name (see :meth:`RepoService._by_name`).
_BY_NAME = (Namespace.account_id == bindparam("account_id"), Namespace.name_key == bindparam("name_key"),
            Repo.name_key == bindparam("repo_key"))
_FIND = select(Repo).join(Namespace, Repo.namespace_id == Namespace.id).where(*_BY_NAME)
#: What :meth:`RepoService.require_ready_row` reads.
_READINESS = (select(Repo.id, Repo.name, Repo.status, Repo.status_code, Repo.status_message)
              .join(Namespace, Repo.namespace_id == Namespace.id).where(*_BY_NAME))
SORTS = ("created_at", "updated_at", "last_push_at", "name")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

#: Errors that a repo that is not ready answers with, by status.
_BUSY = {
    "importing": (ErrorCode.IMPORT_IN_PROGRESS, "Repository import in progress: {name}. Retry shortly."),
    "forking": (ErrorCode.FORK_IN_PROGRESS, "Repository fork in progress: {name}. Retry shortly."),
    "creating": (ErrorCode.CREATE_IN_PROGRESS, "Repository creation in progress: {name}. Retry shortly."),
}


@dataclass
class Created:
    """A new repo and the plaintext of its initial write token (shown once)."""

    repo: Repo
    token: str


class RepoService:
    def __init__(self, core: Core):
        self.core = core

    # -- look-ups -------------------------------------------------------------------

    @staticmethod
    def _by_name(account_id: str, namespace: str, name: str) -> dict[str, str]:
        """The parameters of ``_BY_NAME``: names match case-insensitively."""
        return {"account_id": account_id, "name_key": namespace.lower(), "repo_key": name.lower()}

    @classmethod
    def find(cls, s: Session, account_id: str, namespace: str, name: str) -> Repo | None:
        return s.scalars(_FIND, cls._by_name(account_id, namespace, name)).first()

    def require(self, s: Session, account_id: str, namespace: str, name: str, *, ready: bool = True) -> Repo:
        """The repo, or NOT_FOUND; with ``ready``, the documented 409 while it is busy."""
        validation.namespace_name(namespace)
        validation.repo_name(name)
        return self._required(self.find(s, account_id, namespace, name), name, ready)

    def require_ready_row(self, s: Executor, account_id: str, namespace: str, name: str) -> Any:
        """:meth:`require` (ready) as a plain row of the columns readiness needs, ``id``
        among them: no ORM object, so it runs on a Core connection (token minting)."""
        validation.namespace_name(namespace)
        validation.repo_name(name)
        row = s.execute(_READINESS, self._by_name(account_id, namespace, name)).first()
        return self._required(row, name, True)

    def _required(self, repo: Any, name: str, ready: bool) -> Any:
        if repo is None:
            raise not_found(f"Repository not found: {name}.")
        if ready:
            self.ensure_ready(repo)
        return repo

    @staticmethod
    def ensure_ready(repo: Any) -> None:
        if repo.status in _BUSY:
            code, message = _BUSY[repo.status]
            raise ArtifactsError(code, message.format(name=repo.name))
        if repo.status == "failed":
            # A fork or import that failed in the background: its documented error.
            code = ErrorCode.__members__.get(repo.status_code or "", ErrorCode.INTERNAL_ERROR)
            raise ArtifactsError(code, repo.status_message or "The repository could not be created.")

    def get(self, account_id: str, namespace: str, name: str) -> dict:
        with self.core.db.read() as s:
            return self.to_dict(self.require(s, account_id, namespace, name))

    # -- create ---------------------------------------------------------------------

    def create(
        self,
        account_id: str,
        namespace: str,
        name: str,
        *,
        description: Any = None,
        default_branch: Any = None,
        read_only: Any = False,
        principal: Principal | None = None,
    ) -> Created:
        """One transaction: the repo row, its first write token and (with ``principal``)
        the audit event. No files: storage appears on first use (``GitStorage.ensure``)."""
        validation.namespace_name(namespace)
        validation.repo_name(name)
        description = validation.description(description)
        default_branch = "main" if default_branch is None else validation.branch_name(default_branch)
        read_only = validation.boolean(read_only, "read_only")

        repo_id = ids.new_id()
        args = (account_id, namespace, name, repo_id, description, default_branch, read_only, principal)
        try:
            try:
                return self._insert(*args)
            except IntegrityError:
                # Either the name was taken concurrently, or the namespace was deleted
                # between look-up and insert (then a second attempt recreates it).
                with self.core.db.read() as s:
                    if self.find(s, account_id, namespace, name) is not None:
                        raise
                return self._insert(*args)
        except IntegrityError:
            raise self._exists(name) from None

    def _insert(self, account_id: str, namespace: str, name: str, repo_id: str, description: str | None,
                default_branch: str, read_only: bool, principal: Principal | None) -> Created:
        # Core statements on a connection, not an ORM session: they are all plain, and the
        # session's layers around them were a fifth of a creation's CPU (docs/benchmarks.md).
        with self.core.db.transaction() as s:
            found = s.execute(_NAMESPACE, {"account_id": account_id, "name_key": namespace.lower()}).first()
            if found is not None:
                ns = Namespace(id=found.id, account_id=account_id, name=found.name)
            else:  # the first repo of an implicit namespace: the ORM, in this transaction
                with Session(bind=s) as orm:
                    ns = self.core.namespaces.get_or_create(orm, account_id, namespace)
                    orm.flush()
            now = utcnow()
            values = {
                "id": repo_id, "account_id": account_id, "namespace_id": ns.id, "name": name,
                "name_key": name.lower(), "description": description, "default_branch": default_branch,
                "read_only": read_only, "status": "ready", "status_code": None, "status_message": None,
                "source": None, "storage_path": self.core.storage.relative_path_for(repo_id), "parent_id": None,
                "created_at": now, "updated_at": now, "last_push_at": None,
            }
            # Plain INSERTs, no look-up first: the unique (namespace, name) constraint
            # answers a taken name with an IntegrityError (create() makes it ALREADY_EXISTS),
            # and a row nobody edits needs no unit-of-work flush (docs/benchmarks.md).
            s.execute(_INSERT, values)
            repo = Repo(**values)
            _, token = self.core.tokens.mint(s, repo, "write", 86_400)
            if principal is not None:
                self.core.audit.add(s, "repo.create", account_id=account_id, principal=principal,
                                    resource=f"repo:{namespace}/{name}", details={"repo_id": repo_id})
        repo.namespace = ns
        return Created(repo=repo, token=token)

    @staticmethod
    def _exists(name: str) -> ArtifactsError:
        return ArtifactsError(ErrorCode.ALREADY_EXISTS, f"repo already exists: {name}")

    # -- list -----------------------------------------------------------------------

    def list(
        self,
        account_id: str,
        namespace: str,
        *,
        limit: Any = 50,
        cursor: str | None = None,
        search: str | None = None,
        sort: str = "created_at",
        direction: str = "desc",
        with_total: bool = False,
        page: Any = None,
    ) -> tuple[list[Repo], str | None, int | None]:
        """Keyset pagination: a page costs the same at 100 repos and at 100,000.

        ``page`` (1-based, what wrangler sends) selects offset pagination instead and
        always counts the total."""
        validation.namespace_name(namespace)
        limit = validation.integer(limit, "limit", 1, 200, message="Invalid limit: must be between 1 and 200.")
        if sort not in SORTS:
            raise invalid(f"Invalid sort: must be one of {', '.join(SORTS)}.")
        if direction not in ("asc", "desc"):
            raise invalid("Invalid direction: must be asc or desc.")
        if page is not None:
            page = validation.integer(page, "page", 1, 1_000_000)
            with_total = True
        if search:
            validation.text(search, "search")

        key = {
            "created_at": Repo.created_at,
            "updated_at": Repo.updated_at,
            "last_push_at": func.coalesce(Repo.last_push_at, _EPOCH),
            "name": Repo.name_key,
        }[sort]
        after = None
        if cursor and page is None:
            c = decode_cursor(cursor)
            value, last_id = c.get("v"), c.get("i")
            if (not isinstance(last_id, str) or not validation.TOKEN_ID_RE.match(last_id)
                    or c.get("s") != sort or c.get("d") != direction):
                raise invalid("Invalid cursor.")
            if sort != "name":
                try:
                    value = dt.datetime.fromisoformat(value)
                except (TypeError, ValueError):
                    raise invalid("Invalid cursor.") from None
                if value.tzinfo is None:  # compared with an aware column: a 500 otherwise
                    raise invalid("Invalid cursor.")
            elif not isinstance(value, str) or "\x00" in value:
                raise invalid("Invalid cursor.")
            # A row-value comparison, not "key < v OR (key = v AND id < i)": SQLite and
            # PostgreSQL both turn it into a range of the (namespace, key, id) index,
            # where the OR form scanned up to the cursor (29 ms against 2 ms half-way
            # through 100,000 repos; docs/benchmarks.md).
            pair, bound = tuple_(key, Repo.id), tuple_(literal(value, key.type), literal(last_id, Repo.id.type))
            after = pair < bound if direction == "desc" else pair > bound
        with self.core.db.read() as s:
            ns = self.core.namespaces.find(s, account_id, namespace)
            if ns is None:
                return [], None, 0 if with_total else None
            where = [Repo.namespace_id == ns.id]
            if search:
                pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                where.append(Repo.name_key.like(pattern, escape="\\"))
            total = s.scalar(select(func.count()).select_from(Repo).where(*where)) if with_total else None
            if after is not None:
                where.append(after)
            order = (key.desc(), Repo.id.desc()) if direction == "desc" else (key.asc(), Repo.id.asc())
            q = select(Repo).where(*where).order_by(*order).limit(limit + 1)
            if page is not None:
                q = q.offset((page - 1) * limit)
            rows = list(s.scalars(q))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more and page is None:
            last = rows[-1]
            v: Any = {
                "created_at": last.created_at,
                "updated_at": last.updated_at,
                "last_push_at": last.last_push_at or _EPOCH,
                "name": last.name_key,
            }[sort]
            next_cursor = encode_cursor({
                "s": sort, "d": direction, "i": last.id,
                "v": v.isoformat() if isinstance(v, dt.datetime) else v,
            })
        return rows, next_cursor, total

    # -- delete ---------------------------------------------------------------------

    def delete(self, account_id: str, namespace: str, name: str) -> str:
        """Remove the repo and its tokens now; its files leave the disk in the background."""
        with self.core.db.session() as s:
            repo = self.require(s, account_id, namespace, name, ready=False)
            repo_id, storage_path = repo.id, repo.storage_path
            s.delete(repo)
        self.release_storage(repo_id, storage_path)
        return repo_id

    def release_storage(self, repo_id: str, storage_path: str) -> None:
        self.core.storage.remove(storage_path)

    # -- git side effects -----------------------------------------------------------

    def record_push(self, repo_id: str, at: dt.datetime | None = None) -> None:
        with self.core.db.session() as s:
            repo = s.get(Repo, repo_id)
            if repo is not None:
                now = at or utcnow()
                if repo.last_push_at is None or repo.last_push_at < now:
                    repo.last_push_at = now
                    repo.updated_at = now

    # -- presentation ---------------------------------------------------------------

    def remote_url(self, repo: Repo) -> str:
        settings = self.core.settings
        base = settings.resolved_public_url()
        ns = repo.namespace.name
        if settings.git_host_template:
            scheme = base.split("://", 1)[0] if "://" in base else "https"
            host = settings.git_host_template.format(account_id=repo.account_id)
            return f"{scheme}://{host}/git/{ns}/{repo.name}.git"
        return f"{base}/git/{repo.account_id}/{ns}/{repo.name}.git"

    def to_dict(self, repo: Repo) -> dict:
        """The REST repo object (snake_case), with ``remote`` and ``status``."""
        return {
            "id": repo.id,
            "name": repo.name,
            "description": repo.description,
            "default_branch": repo.default_branch,
            "created_at": isoformat(repo.created_at),
            "updated_at": isoformat(repo.updated_at),
            "last_push_at": isoformat(repo.last_push_at),
            "source": repo.source,
            "read_only": repo.read_only,
            "remote": self.remote_url(repo),
            "status": repo.status,
            **({"error": self.failure_dict(repo)} if repo.status == "failed" else {}),
        }

    @staticmethod
    def failure_dict(repo: Repo) -> dict:
        """Why a background fork or import failed: ``{code, name, message}``."""
        code = ErrorCode.__members__.get(repo.status_code or "", ErrorCode.INTERNAL_ERROR)
        return {"code": code.numeric, "name": code.name, "message": repo.status_message or ""}

    def created_dict(self, created: Created) -> dict:
        r = created.repo
        return {
            "id": r.id,
            "name": r.name,
            "description": r.description,
            "default_branch": r.default_branch,
            "remote": self.remote_url(r),
            "token": created.token,
            "read_only": r.read_only,
        }
