"""Helpers shared by the hardening tests (rate limits, size limits, crashes, races)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx

from artifactd.testing import GitClient, ServerProcess, temporary_database


@contextlib.contextmanager
def own_servers(tmp: Path, count: int = 1, *, env: dict[str, str] | None = None,
                shared: bool = True, args: list[str] | None = None) -> Iterator[list[ServerProcess]]:
    """``count`` server processes on a fresh database; with ``shared`` they share one data
    directory (one repo volume) and one store, as a scaled-out deployment does."""
    with temporary_database(os.environ.get("ARTIFACTD_TEST_DATABASE", "")) as url:
        servers: list[ServerProcess] = []
        try:
            for i in range(count):
                data = tmp / ("data" if shared else f"data{i}")
                servers.append(ServerProcess(data, database_url=url, extra_env=dict(env or {}),
                                             extra_args=list(args or [])).start())
            yield servers
        finally:
            for s in servers:
                s.stop()


def refs(path: Path) -> dict[str, str]:
    out = subprocess.run(["git", "--git-dir", str(path), "for-each-ref", "--format=%(refname) %(objectname)"],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def object_files(path: Path) -> set[str]:
    """Every file under ``objects/`` (a refused push must not add or leave one)."""
    root = path / "objects"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def fsck(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(path), "fsck", "--full", "--strict", "--no-dangling"],
                          capture_output=True, text=True)


def storage_of(server: ServerProcess, namespace: str, name: str) -> Path:
    """The bare repo of a repo, found through the store (by id, as the server does)."""
    from sqlalchemy import create_engine, text

    from artifactd.store.db import normalize_url

    url = server.database_url or f"sqlite:///{(server.data_dir / 'artifactd.db').resolve()}"
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as c:
            rel = c.execute(text(
                "SELECT r.storage_path FROM repos r JOIN namespaces n ON r.namespace_id = n.id "
                "WHERE n.name_key = :ns AND r.name_key = :name"), {"ns": namespace.lower(), "name": name.lower()}
            ).scalar_one()
    finally:
        engine.dispose()
    return server.data_dir / "repos" / rel


def envelope_error(r: httpx.Response) -> tuple[int, str]:
    body = r.json()
    assert body["success"] is False and body["result"] is None, body
    return body["errors"][0]["code"], body["errors"][0]["message"]


def commit_file(git: GitClient, repo: Path, name: str, data: bytes, message: str | None = None) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_bytes(data)
    git.run("add", name, cwd=repo)
    git.run("commit", "-q", "-m", message or f"add {name}", cwd=repo)
    return git.out("rev-parse", "HEAD", cwd=repo)


def descendants(root: int) -> dict[int, tuple[bytes, str]]:
    """Every live process below ``root`` (git runs in sessions of its own, so the
    process tree, not the session, tells what the server started): pid -> (cmdline, state)."""
    import os

    parents: dict[int, int] = {}
    info: dict[int, tuple[bytes, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[pid] = int(fields[1])
        info[pid] = (cmd, fields[0])
    out = {}
    for pid in info:
        p = parents.get(pid)
        while p and p != 1:
            if p == root:
                out[pid] = info[pid]
                break
            p = parents.get(p)
    return out
