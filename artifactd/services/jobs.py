"""Background work of a server process: fork/import jobs, their recovery, maintenance.

- Every fork or import has a ``repo_jobs`` row naming the process that runs it and
  its last heartbeat. A job whose owner died (same host, pid gone) or went silent for
  ``job_stale_seconds`` is taken over by whichever process notices first (a
  compare-and-swap on the row): a fork is redone, an import ends ``failed`` with a
  message saying so. This runs at start-up and then every few seconds, so a repo is
  never left ``forking`` or ``importing`` for good.
- Storage maintenance runs every ``maintenance_interval_seconds`` over every ready repo.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from artifactd.store.models import Repo
from artifactd.store.models_jobs import RepoJob
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.jobs")

HOST = socket.gethostname()[:100]
HEARTBEAT_SECONDS = 5.0
SWEEP_SECONDS = 5.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str) -> bool:
    """True when the owner ran on this host and its process is gone."""
    host, _, rest = owner.rpartition("@")
    pid_s = rest.split(":", 1)[0]
    return host == HOST and pid_s.isdigit() and not _pid_alive(int(pid_s))


class JobService:
    def __init__(self, core: Core):
        self.core = core
        self.owner = f"{HOST}@{os.getpid()}:{secrets.token_hex(4)}"
        self._active: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._executor: ThreadPoolExecutor | None = None
        self.started = False

    # -- tracking ---------------------------------------------------------------------

    def track(self, repo_id: str) -> None:
        with self._lock:
            self._active.add(repo_id)

    def untrack(self, repo_id: str) -> None:
        with self._lock:
            self._active.discard(repo_id)

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=max(1, self.core.settings.import_max_concurrent),
                                                thread_name_prefix="artifactd-import")
        return self._executor

    def submit(self, fn, *args) -> None:
        def run():
            try:
                fn(*args)
            except Exception:  # pragma: no cover - the job records its own failures
                log.exception("background job failed")
        self.executor.submit(run)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        try:
            from artifactd.gitserver.forkstore import cleanup_partial_forks

            cleanup_partial_forks(self.core.storage.root)
            self.recover()
        except Exception:
            log.exception("start-up recovery of jobs failed")
        for target, name in ((self._heartbeat_loop, "artifactd-heartbeat"), (self._sweep_loop, "artifactd-sweep"),
                             (self._maintenance_loop, "artifactd-maintenance")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with self._lock:
                ids = list(self._active)
            if not ids:
                continue
            try:
                with self.core.db.session() as s:
                    s.execute(update(RepoJob).where(RepoJob.repo_id.in_(ids), RepoJob.owner == self.owner)
                              .values(heartbeat_at=utcnow()))
            except Exception:
                log.exception("job heartbeat failed")

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self.recover()
            except Exception:
                log.exception("job recovery failed")

    def _maintenance_loop(self) -> None:
        interval = self.core.settings.maintenance_interval_seconds
        if interval <= 0:
            return
        # Spread processes that start together; the first run comes one interval after start.
        while not self._stop.wait(interval + secrets.randbelow(max(1, min(interval // 10, 600)) + 1)):
            try:
                from artifactd.services.maintenance import run_maintenance

                run_maintenance(self.core)
            except Exception:
                log.exception("scheduled maintenance failed")

    # -- recovery -----------------------------------------------------------------------

    def recover(self) -> int:
        """Take over every job whose owner is gone; returns how many were taken over."""
        stale_before = utcnow() - dt.timedelta(seconds=self.core.settings.job_stale_seconds)
        with self.core.db.session() as s:
            jobs = list(s.scalars(select(RepoJob).where(RepoJob.owner != self.owner)))
            candidates = [(j.repo_id, j.kind, j.owner, j.heartbeat_at) for j in jobs
                          if j.heartbeat_at < stale_before or owner_is_dead(j.owner)]
        taken = 0
        for repo_id, kind, old_owner, old_beat in candidates:
            with self.core.db.session() as s:
                won = s.execute(
                    update(RepoJob)
                    .where(RepoJob.repo_id == repo_id, RepoJob.owner == old_owner, RepoJob.heartbeat_at == old_beat)
                    .values(owner=self.owner, heartbeat_at=utcnow())
                ).rowcount
            if not won:
                continue
            taken += 1
            log.warning("taking over %s job of repo %s from %s", kind, repo_id, old_owner)
            self.track(repo_id)
            if kind == "fork":
                from artifactd.services.forks import forks_of

                self.submit(forks_of(self.core).resume, repo_id)
            else:
                from artifactd.services.imports import imports_of

                imports_of(self.core).abandon(repo_id, "The import was interrupted (the server running it stopped). "
                                                       "Delete the repository and import it again.")
        # Repos busy without a job row (should not happen; e.g. a row from an old
        # version) would stay busy forever: fail them visibly too.
        with self.core.db.session() as s:
            orphans = s.scalars(
                select(Repo.id).where(Repo.status.in_(("forking", "importing")),
                                      ~Repo.id.in_(select(RepoJob.repo_id)),
                                      Repo.created_at < stale_before)
            ).all()
            for rid in orphans:
                s.execute(update(Repo).where(Repo.id == rid, Repo.status.in_(("forking", "importing")))
                          .values(status="failed", status_code="INTERNAL_ERROR",
                                  status_message="The operation was interrupted; delete the repository and retry."))
        return taken


def jobs_of(core: Core) -> JobService:
    svc = core.__dict__.get("_jobs")
    if svc is None:
        svc = core.__dict__.setdefault("_jobs", JobService(core))
    return svc


def install(api, core: Core) -> None:
    """Start the background work with the ASGI app (lifespan), stop it with the app."""
    api.router.add_event_handler("startup", lambda: jobs_of(core).start())
    api.router.add_event_handler("shutdown", lambda: jobs_of(core).stop())


__all__ = ["JobService", "jobs_of", "install"]
