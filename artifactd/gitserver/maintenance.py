"""Storage maintenance of one bare repo: repack, collect garbage, write the commit-graph.

Safety with forks comes from the storage design (docs/forks.md): every repo owns its
object store (forks hard-link packs, never borrow through alternates), so collecting
garbage in one repo can never remove an object that another repo reaches.

Sharing: a pack file with more than one hard link is shared with forks (or with a
parent). Rewriting it would not free a byte (the other repos keep the inode) and
would duplicate its content, so by default such packs are kept as they are (a
temporary ``.keep`` for the duration of the repack). ``full=True`` rewrites them too,
e.g. to purge force-pushed-away content from this repo's store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from artifactd.config import Settings
from artifactd.gitserver.forkstore import LockTimeout, ParentGone, repo_lock, run_git

log = logging.getLogger("artifactd.maintenance")

STATE_FILE = "artifactd-maintenance.json"
KEEP_MARK = "artifactd maintenance: shared pack\n"


@dataclass
class MaintenanceResult:
    path: str
    ran: bool
    reason: str = ""
    packs_before: int = 0
    packs_after: int = 0
    shared_packs_kept: int = 0
    loose_before: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def prune_expression(grace_seconds: int) -> str:
    return "now" if grace_seconds <= 0 else f"{int(grace_seconds)}.seconds.ago"


def _packs(repo: Path) -> list[Path]:
    return sorted((repo / "objects" / "pack").glob("pack-*.pack"))


def _loose_count(repo: Path) -> int:
    n = 0
    for sub in (repo / "objects").iterdir():
        if len(sub.name) == 2 and sub.is_dir():
            n += sum(1 for p in sub.iterdir() if len(p.name) == 38)
    return n


def fingerprint(settings: Settings, repo: Path) -> str:
    """Changes whenever a ref moves or the set of files in the object store changes."""
    refs = run_git(settings, repo, "for-each-ref", "--format=%(objectname) %(refname)").stdout
    packs = [(p.name, p.stat().st_nlink > 1) for p in _packs(repo)]
    h = hashlib.sha256(refs)
    h.update(json.dumps([packs, _loose_count(repo)]).encode())
    return h.hexdigest()


def maintain(settings: Settings, repo: Path, *, grace_seconds: int, full: bool = False,
             force: bool = False) -> MaintenanceResult:
    """Repack and collect garbage in one repo, unless nothing changed since last time.

    Skips (``ran=False``) a repo whose lock is held (being forked or maintained).
    """
    result = MaintenanceResult(path=str(repo), ran=False)
    started = time.monotonic()
    try:
        with repo_lock(repo, shared=False, timeout=0):
            state_path = repo / STATE_FILE
            before = fingerprint(settings, repo)
            previous = None
            if state_path.exists():
                try:
                    previous = json.loads(state_path.read_text()).get("fingerprint")
                except ValueError:
                    previous = None
            # Unreachable objects still within the grace wait in a cruft pack: a repo
            # holding one of its own needs another run once they expire.
            own_cruft = any(p.with_suffix(".mtimes").exists() and p.stat().st_nlink == 1 for p in _packs(repo))
            if previous == before and not (full or force or own_cruft):
                result.reason = "unchanged since last maintenance"
                return result
            packs = _packs(repo)
            result.packs_before = len(packs)
            result.loose_before = _loose_count(repo)
            keeps: list[Path] = []
            if not full:
                for p in packs:
                    keep = p.with_suffix(".keep")
                    if p.stat().st_nlink > 1 and not keep.exists():
                        keep.write_text(KEEP_MARK)
                        keeps.append(keep)
            result.shared_packs_kept = len(keeps)
            try:
                # One pack without bitmaps when some packs are kept (a bitmap must
                # cover every object); bitmaps otherwise, as git does for bare repos.
                cfg = [("repack.writeBitmaps", "false" if keeps else "true"),
                       ("gc.writeCommitGraph", "true"), ("gc.cruftPacks", "true"),
                       ("pack.threads", str(max(1, settings.maintenance_pack_threads)))]
                run_git(settings, repo, "gc", "--quiet", f"--prune={prune_expression(grace_seconds)}",
                        extra_config=cfg)
            finally:
                for keep in keeps:
                    if keep.exists() and keep.read_text() == KEEP_MARK:
                        keep.unlink()
            result.packs_after = len(_packs(repo))
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint(settings, repo), "at": time.time()}))
            os.replace(tmp, state_path)
            result.ran = True
            result.reason = "full" if full else "changed"
    except LockTimeout:
        result.reason = "busy (being forked or maintained)"
    except ParentGone:
        result.reason = "gone"
    except (RuntimeError, OSError) as e:
        if not repo.exists():
            result.reason = "gone"
        else:
            result.errors.append(str(e))
            log.error("maintenance of %s failed: %s", repo, e)
    result.seconds = time.monotonic() - started
    return result
