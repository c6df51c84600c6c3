"""Forks: a new repo in the same namespace that starts from its parent's history.

The storage side (hard-linked packs, O(number of pack files)) is in
``artifactd.gitserver.forkstore``; the design and its safety argument in docs/forks.md.
The fork runs inside the request (it takes milliseconds) while the new repo shows
``forking``; a fork cut short by a crash is redone by the job recovery.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from artifactd import ids, validation
from artifactd.errors import ArtifactsError, ErrorCode, not_found
from artifactd.gitserver.forkstore import LockTimeout, ParentGone, fork_storage
from artifactd.services.jobs import jobs_of
from artifactd.services.repos import Created
from artifactd.store.models import Repo
from artifactd.store.models_jobs import RepoJob
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.forks")

_UNSET: Any = object()


class ForkService:
    def __init__(self, core: Core):
        self.core = core

    def fork(self, account_id: str, namespace: str, parent_name: str, name: Any, *, description: Any = _UNSET,
             read_only: Any = False, default_branch_only: Any = True) -> dict:
        """Fork ``parent_name`` into ``name``; the REST fork result (create result + ``objects``)."""
        validation.namespace_name(namespace)
        validation.repo_name(parent_name)
        validation.repo_name(name)
        if description is not _UNSET:
            description = validation.description(description)
        read_only = validation.boolean(read_only, "read_only")
        default_branch_only = validation.boolean(default_branch_only, "default_branch_only")
        core = self.core
        jobs = jobs_of(core)
        repo_id = ids.new_id()
        storage_path = core.storage.relative_path_for(repo_id)
        try:
            with core.db.session() as s:
                parent = core.repos.require(s, account_id, namespace, parent_name)
                if core.repos.find(s, account_id, namespace, name) is not None:
                    raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"repo already exists: {name}")
                now = utcnow()
                repo = Repo(
                    id=repo_id, account_id=account_id, namespace_id=parent.namespace_id, name=name,
                    name_key=name.lower(),
                    description=parent.description if description is _UNSET else description,
                    default_branch=parent.default_branch, read_only=read_only, status="forking",
                    source=f"artifacts:{parent.namespace.name}/{parent.name}", storage_path=storage_path,
                    parent_id=parent.id, created_at=now, updated_at=now,
                )
                repo.namespace = parent.namespace
                s.add(repo)
                s.flush()
                s.add(RepoJob(repo_id=repo_id, kind="fork", owner=jobs.owner, heartbeat_at=now, created_at=now,
                              params={"parent_id": parent.id, "default_branch_only": default_branch_only}))
                _, token = core.tokens.mint(s, repo, "write", 86_400)
                parent_storage = (parent.storage_path, parent.default_branch)
        except IntegrityError:
            raise ArtifactsError(ErrorCode.ALREADY_EXISTS, f"repo already exists: {name}") from None

        jobs.track(repo_id)
        try:
            parent_path = core.storage.ensure(*parent_storage)  # a never-used parent has no files yet
            result = fork_storage(core.settings, parent_path, core.storage.path(storage_path), repo.default_branch,
                                  default_branch_only=default_branch_only,
                                  lock_timeout=core.settings.fork_lock_timeout_seconds)
        except BaseException as e:
            jobs.untrack(repo_id)
            with core.db.session() as s:
                s.execute(delete(Repo).where(Repo.id == repo_id))
            if isinstance(e, LockTimeout):
                raise ArtifactsError(ErrorCode.INTERNAL_ERROR, "The source repository is busy with storage "
                                     "maintenance; retry shortly.", status=503) from None
            if isinstance(e, ParentGone):
                raise not_found(f"Repository not found: {parent_name} (deleted during the fork).") from None
            if isinstance(e, Exception):
                log.exception("fork of %s/%s into %s failed", namespace, parent_name, name)
                raise ArtifactsError(ErrorCode.INTERNAL_ERROR, "An internal error occurred.") from None
            raise
        if not self._mark_ready(repo_id):
            shutil.rmtree(core.storage.path(storage_path), ignore_errors=True)
            raise not_found(f"Repository not found: {name} (deleted while it was being forked).")
        repo.status = "ready"
        out = core.repos.created_dict(Created(repo=repo, token=token))
        out["objects"] = result.objects
        return out

    def _mark_ready(self, repo_id: str) -> bool:
        jobs = jobs_of(self.core)
        try:
            with self.core.db.session() as s:
                n = s.execute(update(Repo).where(Repo.id == repo_id, Repo.status == "forking")
                              .values(status="ready", updated_at=utcnow())).rowcount
                s.execute(delete(RepoJob).where(RepoJob.repo_id == repo_id))
            return bool(n)
        finally:
            jobs.untrack(repo_id)

    def resume(self, repo_id: str) -> None:
        """Redo a fork whose process died (job recovery). Ends ``ready`` or ``failed``."""
        core = self.core
        with core.db.session() as s:
            repo = s.get(Repo, repo_id)
            job = s.get(RepoJob, repo_id)
            if repo is None or job is None or repo.status != "forking":
                jobs_of(core).untrack(repo_id)
                return
            parent = s.get(Repo, job.params.get("parent_id")) if job.params.get("parent_id") else None
            only = bool(job.params.get("default_branch_only", True))
            target = core.storage.path(repo.storage_path)
            parent_path = core.storage.path(parent.storage_path) if parent is not None else None
            parent_ready = parent is not None and parent.status == "ready"
            branch = repo.default_branch
        try:
            if target.exists():
                pass  # the crash came after the rename: the storage is complete
            elif not parent_ready:
                raise ParentGone("parent")
            else:
                core.storage.ensure(parent.storage_path, parent.default_branch)
                fork_storage(core.settings, parent_path, target, branch, default_branch_only=only,
                             lock_timeout=core.settings.fork_lock_timeout_seconds)
        except Exception as e:
            message = ("The source repository was deleted before the fork finished; delete this repository."
                       if isinstance(e, ParentGone) else "The fork failed; delete this repository and fork again.")
            if not isinstance(e, ParentGone):
                log.exception("resumed fork of repo %s failed", repo_id)
            with core.db.session() as s:
                s.execute(update(Repo).where(Repo.id == repo_id, Repo.status == "forking").values(
                    status="failed", status_code="NOT_FOUND" if isinstance(e, ParentGone) else "INTERNAL_ERROR",
                    status_message=message, updated_at=utcnow()))
                s.execute(delete(RepoJob).where(RepoJob.repo_id == repo_id))
            jobs_of(core).untrack(repo_id)
            return
        if not self._mark_ready(repo_id):
            shutil.rmtree(target, ignore_errors=True)


def forks_of(core: Core) -> ForkService:
    svc = core.__dict__.get("_forks")
    if svc is None:
        svc = core.__dict__.setdefault("_forks", ForkService(core))
    return svc
