"""How much the server's own memory grows while a large repository is pushed and cloned.

Streaming means the Python process never holds a pack: its resident memory should stay
flat whatever the repository's size (git's children, which do the packing, aside).

    python -m bench.memory [--size-mb 500] [--repo PATH]

Prints the server process's RSS before, its peak (VmHWM) during the push and during the
clone, and the time each took. The server runs on the embedded default (SQLite).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from artifactd.testing import GitClient, ServerProcess
from bench.genrepo import generate
from bench.measure import rss_bytes

MIB = 1 << 20


def measure(source: Path, work: Path) -> dict[str, float]:
    git = GitClient(work / "home")
    srv = ServerProcess(work / "data").start()
    try:
        pid = srv.proc.pid  # type: ignore[union-attr]
        repo = srv.create_repo("default", "big")
        rss0, _ = rss_bytes(pid)
        t0 = time.perf_counter()
        git.run("push", "--quiet", repo["remote"], "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*",
                cwd=source, token=repo["token"], timeout=3600)
        push_s = time.perf_counter() - t0
        rss1, hwm1 = rss_bytes(pid)
        t0 = time.perf_counter()
        git.run("clone", "--quiet", "--bare", repo["remote"], str(work / "clone.git"), token=repo["token"],
                timeout=3600)
        clone_s = time.perf_counter() - t0
        rss2, hwm2 = rss_bytes(pid)
        pack_bytes = sum(p.stat().st_size for p in (work / "clone.git" / "objects" / "pack").glob("*.pack"))
    finally:
        srv.stop()
    return {
        "pack_mib": pack_bytes / MIB,
        "rss_before_mib": rss0 / MIB,
        "peak_after_push_mib": hwm1 / MIB,
        "peak_after_clone_mib": hwm2 / MIB,
        "rss_after_clone_mib": rss2 / MIB,
        "growth_push_mib": (hwm1 - rss0) / MIB,
        "growth_clone_mib": (hwm2 - rss0) / MIB,
        "push_s": push_s,
        "clone_s": clone_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=500)
    ap.add_argument("--repo", type=Path, help="use this repository instead of generating one")
    ap.add_argument("--keep", type=Path, help="cache the generated repository here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="artifactd-mem-"))
    try:
        source = args.repo
        if source is None:
            source = args.keep or work / "source.git"
            if not (source / "objects").exists():
                stats = generate(source, objects=50_000, size_mb=args.size_mb, seed=1, bare=True)
                print(f"generated {source}: {stats}")
        r = measure(source, work)
        print(f"pack {r['pack_mib']:.0f} MiB: push {r['push_s']:.1f} s, clone {r['clone_s']:.1f} s")
        print(f"server RSS before {r['rss_before_mib']:.1f} MiB; peak after push {r['peak_after_push_mib']:.1f} MiB "
              f"(+{r['growth_push_mib']:.1f}); peak after clone {r['peak_after_clone_mib']:.1f} MiB "
              f"(+{r['growth_clone_mib']:.1f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
