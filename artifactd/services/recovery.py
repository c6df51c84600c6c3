"""Start-up recovery: finish or clear what a killed server process left behind.

A process killed with SIGKILL (or a machine that lost power) can leave:

- a repo a first request was building in ``tmp/`` (:meth:`GitStorage.ensure`);
- git lock files (``refs/heads/main.lock``) that would refuse every later push to that ref;
- quarantine directories and temporary packs of pushes that never finished;
- a repo directory with no repo row (a delete that died before its rename to the trash,
  a first request that built a repo deleted meanwhile);
- files in the trash (emptied by :meth:`GitStorage.prepare`).

None of these is visible through the API. Another server process sharing the repo
directory may still be using the same kinds of files, so they are cleared at once only
when no other live process shares this data volume (told by :class:`ServerLease` rows);
otherwise only when older than ``recovery_grace_seconds``.

Features with work of their own to recover (imports, forks) add a step to
:data:`RECOVERY_STEPS`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from artifactd.gitserver.forkstore import LOCK_NAME as FLOCK_NAME
from artifactd.gitserver.storage import NEW_REPO_PREFIX
from artifactd.store.models import Repo
from artifactd.store.models_hardening import ServerLease
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.recovery")

HEARTBEAT_SECONDS = 10.0
LEASE_EXPIRY_SECONDS = 45.0
REPO_DIR_RE = re.compile(r"^[0-9a-z]{16}\.git$")


@dataclass
class RecoveryReport:
    others_alive: bool = False
    new_repos_removed: int = 0
    locks_removed: int = 0
    quarantines_removed: int = 0
    orphans_removed: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def any(self) -> bool:
        return bool(self.new_repos_removed or self.locks_removed or self.quarantines_removed
                    or self.orphans_removed or any(self.extra.values()))


#: Extra steps ``(name, fn(core, grace_seconds) -> count)`` run after the built-in ones.
RECOVERY_STEPS: list[tuple[str, Callable[[Core, float], int]]] = []


def volume_id(data_dir: Path) -> str:
    """A random id naming this data volume, shared by every process that mounts it."""
    path = data_dir / "volume-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    tmp = data_dir / f".volume-id.{secrets.token_hex(4)}"
    tmp.write_text(secrets.token_hex(16) + "\n")
    try:
        os.link(tmp, path)  # first writer wins, atomically
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


class Leases:
    """This process's lease row, kept fresh by a heartbeat thread."""

    def __init__(self, core: Core):
        self.core = core
        self.id = secrets.token_hex(16)
        self.volume = volume_id(core.settings.data_dir)
        self.hostname = socket.gethostname()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        with self.core.db.session() as s:
            now = utcnow()
            s.add(ServerLease(id=self.id, volume=self.volume, hostname=self.hostname[:255], pid=os.getpid(),
                              started_at=now, heartbeat_at=now))
        self._thread = threading.Thread(target=self._beat, name="artifactd-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.core.db.session() as s:
                    s.execute(update(ServerLease).where(ServerLease.id == self.id).values(heartbeat_at=utcnow()))
            except Exception:  # noqa: BLE001 - a missed beat is retried
                log.warning("lease heartbeat failed", exc_info=True)

    def others_alive(self) -> bool:
        """Whether another live process shares this data volume; dead leases are removed."""
        now = utcnow()
        alive = False
        with self.core.db.session() as s:
            rows = s.scalars(select(ServerLease).where(ServerLease.volume == self.volume,
                                                       ServerLease.id != self.id)).all()
            for row in rows:
                fresh = (now - row.heartbeat_at).total_seconds() < LEASE_EXPIRY_SECONDS
                if fresh and row.hostname == self.hostname and not _pid_alive(row.pid, row.started_at):
                    fresh = False
                if fresh:
                    alive = True
                else:
                    s.execute(delete(ServerLease).where(ServerLease.id == row.id))
        return alive

    def close(self) -> None:
        self._stop.set()
        try:
            with self.core.db.session() as s:
                s.execute(delete(ServerLease).where(ServerLease.id == self.id))
        except Exception:  # noqa: BLE001
            log.warning("could not drop the lease", exc_info=True)


def _pid_alive(pid: int, lease_started: dt.datetime | None = None) -> bool:
    """Whether the process that took a lease still runs: same pid, not a zombie, and not
    a newer process that got the pid after the old one died (pids are reused)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return True
    if fields[0] == "Z":  # killed, not yet reaped
        return False
    if lease_started is not None:
        try:
            with open("/proc/stat") as f:
                btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
            started = btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        except (OSError, StopIteration, ValueError, IndexError):
            return True
        if started > lease_started.timestamp() + 2:  # the pid now belongs to a later process
            return False
    return True


def _older_than(path: Path, seconds: float, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime >= seconds
    except FileNotFoundError:
        return False


class Recovery:
    def __init__(self, core: Core, leases: Leases):
        self.core = core
        self.leases = leases

    def run(self) -> RecoveryReport:
        report = RecoveryReport(others_alive=self.leases.others_alive())
        grace = self.core.settings.recovery_grace_seconds if report.others_alive else 0.0
        now = time.time()
        report.new_repos_removed = self._new_repo_leftovers(grace, now)
        repos = self._repo_dirs()
        for path in repos:
            locks, quarantines = self._sweep_repo(path, grace, now)
            report.locks_removed += locks
            report.quarantines_removed += quarantines
        report.orphans_removed = self._orphans(repos, grace, now)
        for name, step in RECOVERY_STEPS:
            try:
                report.extra[name] = step(self.core, grace)
            except Exception:  # noqa: BLE001 - one failed step must not stop the server
                log.exception("recovery step %s failed", name)
        if report.any():
            log.warning("start-up recovery: %s", report)
        return report

    # -- steps ----------------------------------------------------------------------

    def _new_repo_leftovers(self, grace: float, now: float) -> int:
        """Repos a first use was building in tmp/ when its process died (GitStorage.ensure)."""
        tmp = self.core.storage.tmp
        done = 0
        for entry in tmp.glob(f"{NEW_REPO_PREFIX}*") if tmp.is_dir() else []:
            if _older_than(entry, grace, now):
                shutil.rmtree(entry, ignore_errors=True)
                done += 1
        return done

    def _repo_dirs(self) -> list[Path]:
        root = self.core.storage.root
        out = []
        for fan in root.iterdir() if root.is_dir() else []:
            if fan.is_dir() and len(fan.name) == 2:
                out += [p for p in fan.iterdir() if REPO_DIR_RE.match(p.name) and p.is_dir()]
        return out

    def _sweep_repo(self, repo: Path, grace: float, now: float) -> tuple[int, int]:
        locks = quarantines = 0
        # Git's lock files only: artifactd.lock (forkstore) is an flock target whose lock
        # dies with its holder; removing the file would split later lockers.
        candidates = [p for p in repo.iterdir() if p.name.endswith(".lock") and p.name != FLOCK_NAME]
        for base in (repo / "refs", repo / "objects" / "info"):
            for dirpath, _dirs, files in os.walk(base):
                candidates += [Path(dirpath) / f for f in files if f.endswith(".lock")]
        for lock in candidates:
            if _older_than(lock, grace, now):
                with _quiet():
                    lock.unlink()
                    locks += 1
        objects = repo / "objects"
        leftovers = [p for p in objects.glob("tmp_objdir-*")] + [p for p in (objects / "pack").glob("tmp_*")]
        for p in leftovers:
            if _older_than(p, grace, now):
                with _quiet():
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                    quarantines += 1
        return locks, quarantines

    def _orphans(self, repos: list[Path], grace: float, now: float) -> int:
        """Repo dirs with no repo row (and borrowed by no other repo) go to the trash."""
        root = self.core.storage.root
        with self.core.db.session() as s:
            known = set(s.scalars(select(Repo.storage_path)))
        borrowed: set[Path] = set()
        for path in repos:
            alt = path / "objects" / "info" / "alternates"
            with _quiet():
                for line in alt.read_text().splitlines():
                    if line.strip() and not line.startswith("#"):
                        target = (path / "objects" / line.strip()).resolve()
                        borrowed.update(target.parents)
                        borrowed.add(target)
        removed = 0
        for path in repos:
            rel = path.relative_to(root).as_posix()
            if rel in known or path.resolve() in borrowed or not _older_than(path, grace, now):
                continue
            # Re-check against the store: a create may have committed since the read above.
            with self.core.db.session() as s:
                if s.scalar(select(Repo.id).where(Repo.storage_path == rel)) is not None:
                    continue
            self.core.storage.remove(rel)
            removed += 1
        return removed


class _quiet:
    """Ignore files that vanished (another process or git itself removed them)."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, (FileNotFoundError, NotADirectoryError))
