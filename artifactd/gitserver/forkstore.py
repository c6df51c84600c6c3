"""Fork storage: a fork hard-links its parent's pack files (docs/forks.md).

A fork's objects directory holds hard links to the parent's packs (and loose objects)
as they were at the moment of the fork. No ``objects/info/alternates`` is ever written:

- the cost is O(number of pack files + number of refs), not O(bytes): one ``link(2)``
  per file, whatever the pack's size;
- every repo owns its object store; deleting a parent, or repacking it, unlinks the
  parent's names only, while the inode lives on in each fork that links it;
- a repo can serve only objects in its own store, so nothing pushed to a fork (or to
  a parent after the fork) is ever visible through another repo.

Concurrency: maintenance takes the repo's lock exclusively; a fork takes its parent's
lock shared while it snapshots refs and links files. Pushes take no lock: they only add
files, and a fork snapshots the refs *before* it lists the files, so everything the
snapshot reaches is among the files it links.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2

from artifactd.config import Settings
from artifactd.gitserver.engine import git_env, isolate_libgit2
from artifactd.gitserver.storage import create_bare_repo

LOCK_NAME = "artifactd.lock"
#: Files that belong to a pack and travel with it (same basename).
PACK_SIDECARS = (".pack", ".rev", ".bitmap", ".mtimes", ".idx")  # .idx last: it makes the pack visible


class LockTimeout(Exception):
    pass


class ParentGone(Exception):
    """The parent's storage disappeared while it was being forked."""


@contextlib.contextmanager
def repo_lock(repo_dir: Path, *, shared: bool, timeout: float | None = None) -> Iterator[None]:
    """flock on ``<repo>/artifactd.lock``. ``timeout=0``: try once; None: wait forever."""
    path = repo_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise ParentGone(str(repo_dir)) from None
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(str(repo_dir)) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def run_git(settings: Settings, repo_dir: Path, *args: str, input: bytes | None = None,
            extra_config: list[tuple[str, str]] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = git_env(settings)
    if extra_config:
        n = int(env["GIT_CONFIG_COUNT"])
        for i, (k, v) in enumerate(extra_config):
            env[f"GIT_CONFIG_KEY_{n + i}"] = k
            env[f"GIT_CONFIG_VALUE_{n + i}"] = v
        env["GIT_CONFIG_COUNT"] = str(n + len(extra_config))
    proc = subprocess.run([settings.git_binary, "--git-dir", str(repo_dir), *args], env=env, input=input,
                          capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-800:]}")
    return proc


def snapshot_refs(settings: Settings, repo_dir: Path, only: str | None = None) -> list[tuple[str, str]]:
    """``(sha, refname)`` of every ref (or of exactly ``only``), sorted by name."""
    args = ["for-each-ref", "--format=%(objectname) %(refname)"]
    if only:
        args.append(only)
    out = run_git(settings, repo_dir, *args).stdout.decode("utf-8", "surrogateescape")
    refs = []
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        if only and name != only:
            continue
        refs.append((sha, name))
    return refs


@dataclass
class ForkResult:
    objects: int
    files_linked: int
    refs: int


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except FileNotFoundError:
        if not src.parent.exists():
            raise ParentGone(str(src)) from None
        raise


def link_objects(parent: Path, child: Path) -> int:
    """Hard-link the parent's packs and loose objects into the child; returns files linked."""
    linked = 0
    src_pack, dst_pack = parent / "objects" / "pack", child / "objects" / "pack"
    dst_pack.mkdir(parents=True, exist_ok=True)
    if not src_pack.is_dir():
        raise ParentGone(str(parent))
    for idx in sorted(src_pack.glob("pack-*.idx")):
        base = idx.name[: -len(".idx")]
        for ext in PACK_SIDECARS:
            src = src_pack / (base + ext)
            if ext == ".idx" or src.exists():
                try:
                    _link(src, dst_pack / (base + ext))
                except FileNotFoundError:
                    # Only maintenance removes packs, and it is locked out; a missing
                    # sidecar (.rev/.bitmap) is optional.
                    if ext in (".idx", ".pack"):
                        raise
                    continue
                linked += 1
    objects = parent / "objects"
    for sub in objects.iterdir():
        if len(sub.name) == 2 and sub.is_dir():
            names = [p for p in sub.iterdir() if len(p.name) == 38 and not p.name.startswith("tmp")]
            if not names:
                continue
            (child / "objects" / sub.name).mkdir(exist_ok=True)
            for p in names:
                _link(p, child / "objects" / sub.name / p.name)
                linked += 1
    return linked


def write_packed_refs(child: Path, refs: list[tuple[str, str]]) -> None:
    """The refs of the fork, in git's documented packed-refs format (sorted, unpeeled)."""
    lines = ["# pack-refs with: sorted \n"]
    lines += [f"{sha} {name}\n" for sha, name in sorted(refs, key=lambda r: r[1].encode("utf-8", "surrogateescape"))]
    tmp = child / "packed-refs.tmp"
    tmp.write_bytes("".join(lines).encode("utf-8", "surrogateescape"))
    tmp.replace(child / "packed-refs")


def count_objects(settings: Settings, repo_dir: Path) -> int:
    out = run_git(settings, repo_dir, "count-objects", "-v").stdout.decode()
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return int(fields.get("count", 0)) + int(fields.get("in-pack", 0))


def count_objects_fast(repo_dir: Path) -> int:
    """What ``git count-objects -v`` reports as ``count + in-pack``, without running git:
    the object count in each pack index's header plus the loose object files. A fork
    is mostly this and two other git runs, each ~5-10 ms (bench/README.md)."""
    total = 0
    for idx in (repo_dir / "objects" / "pack").glob("pack-*.idx"):
        with open(idx, "rb") as f:
            head = f.read(8)
            # v2+: magic \377tOc and a version, then the fan-out table; v1: fan-out first.
            f.seek((8 if head[:4] == b"\377tOc" else 0) + 255 * 4)
            total += int.from_bytes(f.read(4), "big")
    objects = repo_dir / "objects"
    for sub in os.scandir(objects):
        if len(sub.name) == 2 and sub.is_dir():
            total += sum(1 for p in os.scandir(sub.path) if len(p.name) == 38 and not p.name.startswith("tmp"))
    return total


def fork_storage(settings: Settings, parent: Path, child: Path, default_branch: str, *,
                 default_branch_only: bool, lock_timeout: float | None) -> ForkResult:
    """Build the fork's bare repo at ``child`` (which must not exist) from ``parent``.

    Built under a temporary name next to ``child`` and renamed into place, so a crash
    never leaves a half-made repo on the final path.
    """
    tmp = child.parent / f".forking-{child.name}-{uuid.uuid4().hex[:8]}"
    child.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Hooks are the server's (core.hooksPath); no sample files, no description.
        create_bare_repo(tmp, default_branch)
        with repo_lock(parent, shared=True, timeout=lock_timeout):
            only = f"refs/heads/{default_branch}" if default_branch_only else None
            # Refs first, files second: a push only adds files, so every object the
            # snapshot reaches is among the files listed afterwards.
            refs = snapshot_refs(settings, parent, only)
            linked = link_objects(parent, tmp)
            shallow = parent / "shallow"
            if shallow.exists():
                shutil.copyfile(shallow, tmp / "shallow")
        write_packed_refs(tmp, refs)
        if refs:
            # In this process (libgit2) rather than `git cat-file --batch-check`: a spawn
            # less, and no cost per ref (5.1 ms for 97 refs against 3.2 ms for 5).
            isolate_libgit2(settings)
            odb = pygit2.Repository(str(tmp)).odb
            if not all(odb.exists(sha) for sha, _ in refs):
                raise RuntimeError("fork is missing objects its refs point to")
        objects = count_objects_fast(tmp)
        os.replace(tmp, child)
        return ForkResult(objects=objects, files_linked=linked, refs=len(refs))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cleanup_partial_forks(root: Path, older_than: float = 3600) -> None:
    """Remove ``.forking-*`` / ``.importing-*`` build dirs left by a crash."""
    if not root.exists():
        return
    now = time.time()
    for shard in root.iterdir():
        if not shard.is_dir():
            continue
        for entry in shard.iterdir():
            if entry.name.startswith((".forking-", ".importing-")):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > older_than:
                        shutil.rmtree(entry, ignore_errors=True)
