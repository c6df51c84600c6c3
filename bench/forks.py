#!/usr/bin/env python3
"""Fork benchmark: fork repos of ~1 MB, ~35 MB and ~350 MB through the REST API of a
running artifactd and print each fork's wall time and the extra disk it used.

    .venv/bin/python bench/forks.py [--sizes 1,35,350] [--forks 5] [--workdir DIR]

Each repo comes from ``bench/genrepo.py`` (deterministic; generated once and cached in
the work dir), is pushed into artifactd with ``git push --mirror`` and repacked by
``artifactd maintenance`` (a steady-state repo is a few packs), then forked ``--forks``
times. "extra disk" is what ``du`` counts for the fork directory after the parent was
counted (hard-linked files are counted once). For contrast the table also shows what a
copying fork would cost: ``cp -a`` of the parent's directory. One fork per size is
checked with ``git fsck --connectivity-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from artifactd.gitserver.storage import GitStorage  # noqa: E402
from artifactd.testing import GitClient, ServerProcess  # noqa: E402
from bench.genrepo import generate  # noqa: E402

#: size in MiB -> object count for genrepo (its default ratio is 35 MiB per 50k objects;
#: the big one gets extra binary blobs to reach its size).
SIZES = {1: 1_500, 35: 50_000, 350: 100_000}


def du_kib(*paths: Path) -> list[int]:
    out = subprocess.run(["du", "-sk", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    return [int(line.split("\t")[0]) for line in out.splitlines()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,35,350", help="comma-separated target sizes in MiB")
    ap.add_argument("--forks", type=int, default=5, help="forks per size")
    ap.add_argument("--workdir", type=Path, default=None, help="kept between runs (generated repos are cached)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="artifactd-bench-forks-"))
    work.mkdir(parents=True, exist_ok=True)

    sources = {}
    for size in sizes:
        src = work / f"genrepo-{size}mb.git"
        if not (src / "HEAD").exists():
            shutil.rmtree(src, ignore_errors=True)
            print(f"generating a ~{size} MiB repo ...", file=sys.stderr, flush=True)
            stats = generate(src, objects=SIZES.get(size, size * 1500), size_mb=size, seed=1, bare=True)
            print(f"  {stats}", file=sys.stderr, flush=True)
        sources[size] = src

    data = work / "server"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    srv = ServerProcess(data / "data", extra_env={"ARTIFACTD_MAINTENANCE_INTERVAL_SECONDS": "0"}).start()
    git = GitClient(work / "git-home")
    rows = []
    try:
        for size in sizes:
            src = sources[size]
            repo = srv.create_repo("bench", f"base-{size}mb")
            t0 = time.monotonic()
            git.run("push", "-q", "--mirror", repo["remote"], cwd=src, token=repo["token"], timeout=3600)
            push_s = time.monotonic() - t0
            subprocess.run([sys.executable, "-m", "artifactd", "maintenance", "--quiet", "--data-dir",
                            str(srv.data_dir), "--repo", f"bench/base-{size}mb"], check=True)
            pdir = srv.data_dir / "repos" / GitStorage.relative_path_for(repo["id"])
            parent_kib = du_kib(pdir)[0]
            packs = len(list((pdir / "objects" / "pack").glob("*.pack")))
            times, extras, objects = [], [], None
            for i in range(args.forks):
                with srv.api() as c:
                    t0 = time.monotonic()
                    r = c.post(f"/namespaces/bench/repos/base-{size}mb/fork",
                               json={"name": f"fork-{size}mb-{i}", "default_branch_only": False})
                    elapsed = time.monotonic() - t0
                assert r.status_code == 201, r.text
                res = r.json()["result"]
                objects = res["objects"]
                fdir = srv.data_dir / "repos" / GitStorage.relative_path_for(res["id"])
                times.append(elapsed)
                extras.append(du_kib(pdir, fdir)[1])
                if i == 0:
                    subprocess.run(["git", "--git-dir", str(fdir), "fsck", "--connectivity-only", "--no-progress"],
                                   check=True, capture_output=True)
            copy_dir = work / "copy-baseline"
            shutil.rmtree(copy_dir, ignore_errors=True)
            t0 = time.monotonic()
            shutil.copytree(pdir, copy_dir)
            copy_s = time.monotonic() - t0
            shutil.rmtree(copy_dir, ignore_errors=True)
            rows.append({
                "size_mib_target": size, "parent_mib": round(parent_kib / 1024, 1), "objects": objects,
                "packs": packs, "push_s": round(push_s, 1),
                "fork_ms_median": round(statistics.median(times) * 1000, 1),
                "fork_ms_min": round(min(times) * 1000, 1), "fork_ms_max": round(max(times) * 1000, 1),
                "extra_kib_median": statistics.median(extras), "copy_s": round(copy_s, 2),
            })
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        srv.stop()

    print()
    print(f"Forks via REST on {os.cpu_count()} cores, {args.forks} forks per size "
          f"(git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}).")
    print()
    print("| repo | objects | packs | fork time median (min-max) | extra disk per fork | copying it instead |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['parent_mib']} MiB | {r['objects']:,} | {r['packs']} | {r['fork_ms_median']} ms "
              f"({r['fork_ms_min']}-{r['fork_ms_max']}) | {r['extra_kib_median']} KiB | {r['copy_s']} s |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
