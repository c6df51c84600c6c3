"""A harness that kills the server with SIGKILL while clients work, restarts it, and checks
that nothing acknowledged was lost and nothing half-done is visible.

A *scenario* is one kind of operation (push, create, delete, revoke; fork and import
join as two more). It prepares state, runs a client loop that records every operation
the server acknowledged, and afterwards checks its own promises. The harness adds the
checks every scenario shares: every repo row has a repository on disk and every
repository a row, every repository passes ``git fsck``, no lock file, quarantine or push
log is left, no repo is stuck in a non-ready state.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from artifactd.testing import GitClient, ServerProcess


@dataclass
class Context:
    server: ServerProcess
    git: GitClient
    tmp: Path
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    acks: int = 0
    attempts: int = 0
    state: dict = field(default_factory=dict)

    def ack(self) -> None:
        with self.lock:
            self.acks += 1

    def attempt(self) -> None:
        with self.lock:
            self.attempts += 1


class Scenario(Protocol):
    name: str
    workers: int

    def setup(self, ctx: Context) -> None: ...

    def work(self, ctx: Context, worker: int, stop: threading.Event) -> None: ...

    def verify(self, ctx: Context) -> None: ...


@dataclass
class Figures:
    kills: int = 0
    attempts: int = 0
    acknowledged: int = 0


def store_rows(server: ServerProcess, sql: str, **params) -> list:
    from sqlalchemy import create_engine, text

    from artifactd.store.db import normalize_url

    url = server.database_url or f"sqlite:///{(server.data_dir / 'artifactd.db').resolve()}"
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as c:
            return list(c.execute(text(sql), params).all())
    finally:
        engine.dispose()


BUSY = ("forking", "importing", "creating")


def check_store_matches_disk(server: ServerProcess) -> None:
    # Interrupted forks and imports are finished or failed by the job recovery of the
    # restarted server: never left busy.
    deadline = time.monotonic() + 90
    while True:
        rows = store_rows(server, "SELECT id, storage_path, status FROM repos")
        busy = [r for r in rows if r[2] in BUSY]
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not busy, busy
    assert all(status in ("ready", "failed") for _, _, status in rows), rows
    known = {path for _, path, status in rows if status == "ready"}
    failed = {path for _, path, status in rows if status == "failed"}
    root = server.data_dir / "repos"
    on_disk = {p.relative_to(root).as_posix() for p in root.glob("*/*.git")} - failed
    recovery = [line for line in server.log_path.read_text(errors="replace").splitlines() if "recovery" in line]
    # A repo that was never used has no files yet (GitStorage.ensure): rows without dirs are fine.
    assert on_disk <= known, {"dirs without rows": on_disk - known, "recovery": recovery[-3:]}
    for rel in on_disk:
        repo = root / rel
        p = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--full", "--strict", "--no-dangling"],
                           capture_output=True, text=True)
        assert p.returncode == 0, (rel, p.stderr)
        leftovers = [str(x) for x in repo.rglob("*.lock") if x.name != "artifactd.lock"]  # (an flock target)
        leftovers += [str(x) for x in (repo / "objects").glob("tmp_objdir*")]
        assert leftovers == [], leftovers
    assert list((server.data_dir / "tmp").glob("push-*")) == []
    assert list((server.data_dir / "tmp").glob("newrepo-*")) == []


def run_crash_rounds(server: ServerProcess, git: GitClient, tmp: Path, scenario: Scenario, rounds: int,
                     seed: int = 0) -> Figures:
    ctx = Context(server=server, git=git, tmp=tmp, rng=random.Random(seed))
    figures = Figures()
    scenario.setup(ctx)
    for _ in range(rounds):
        stop = threading.Event()
        target = ctx.acks + ctx.rng.randint(2, 8)
        threads = [threading.Thread(target=_guarded, args=(scenario, ctx, w, stop), daemon=True)
                   for w in range(scenario.workers)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while ctx.acks < target and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(ctx.rng.random() * 0.05)  # land somewhere inside the next operations
        server.stop(sig=9)  # the whole process group: the server and its git children
        figures.kills += 1
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a client is still running; it could reach the new server"
        server.start()
        check_store_matches_disk(server)
        scenario.verify(ctx)
    figures.attempts, figures.acknowledged = ctx.attempts, ctx.acks
    return figures


def _guarded(scenario: Scenario, ctx: Context, worker: int, stop: threading.Event) -> None:
    try:
        scenario.work(ctx, worker, stop)
    except (httpx.HTTPError, OSError):
        pass  # the server died under us: expected


def api(ctx: Context) -> httpx.Client:
    return ctx.server.api()
