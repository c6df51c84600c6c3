"""Fork time and extra disk against repo size, through artifactd's REST API (the logic of
bench/forks.py, callable from bench/run.py on a running ``ArtifactdServer``).

For each size: the generated repo is pushed (``--mirror``), repacked by ``artifactd
maintenance`` into its steady state, then forked ``forks`` times; each fork's wall time
is the REST call (``POST .../repos/{name}/fork``, everything branches), its extra disk
what ``du`` counts for the fork after the parent (hard links count once).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.artifactd_server import NAMESPACE, ArtifactdServer
from bench.forks import SIZES, du_kib
from bench.genrepo import generate
from bench.measure import git


def source_repo(cache: Path, size_mb: int, log: Callable[[str], None] = print) -> Path:
    """The generated repo of ~``size_mb`` MiB (cached under ``cache``)."""
    objects = SIZES.get(size_mb, max(300, size_mb * 1500))
    src = cache / f"genrepo-{objects}obj-{size_mb:g}mb-seed1.git"  # the name bench.run uses too
    if not (src / "HEAD").exists():
        shutil.rmtree(src, ignore_errors=True)
        log(f"  generating a ~{size_mb} MiB repo ({objects} objects) ...")
        stats = generate(src, objects=objects, size_mb=size_mb, seed=1, bare=True)
        log(f"  generated in {stats['seconds']} s: {stats['size_pack_bytes'] / 2**20:.1f} MiB packed")
    return src


def fork_sizes(server: ArtifactdServer, sources: dict[int, Path], forks: int = 5,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    for size, src in sources.items():
        base = f"fbase-{size}mb"
        remote = server.create_empty(base)
        t0 = time.perf_counter()
        git(["push", "-q", "--mirror", remote], cwd=src, config=server.git_config, timeout=3600)
        push_s = time.perf_counter() - t0
        server.maintenance(base)
        pdir = server.storage_dir(base)
        parent_kib = du_kib(pdir)[0]
        times, extras, objects = [], [], None
        with server.api() as c:
            for i in range(forks):
                t0 = time.perf_counter()
                r = c.post(f"/namespaces/{NAMESPACE}/repos/{base}/fork",
                           json={"name": f"fork-{size}mb-{i}", "default_branch_only": False})
                times.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    raise RuntimeError(f"fork failed: {r.status_code} {r.text[:300]}")
                objects = r.json()["result"].get("objects")
        for i in range(forks):
            fdir = server.storage_dir(f"fork-{size}mb-{i}")
            extras.append(du_kib(pdir, fdir)[1])
            if i == 0:
                subprocess.run(["git", "--git-dir", str(fdir), "fsck", "--connectivity-only", "--no-progress"],
                               check=True, capture_output=True)
        rows.append({
            "size_mib_target": size, "parent_mib": round(parent_kib / 1024, 1), "objects": objects,
            "push_s": round(push_s, 2), "forks": forks,
            "fork_ms_median": round(statistics.median(times) * 1000, 2),
            "fork_ms_min": round(min(times) * 1000, 2), "fork_ms_max": round(max(times) * 1000, 2),
            "fork_ms_samples": [round(t * 1000, 2) for t in times],
            "extra_kib_median": statistics.median(extras),
        })
        log(f"  {size} MiB ({rows[-1]['parent_mib']} MiB on disk): fork median {rows[-1]['fork_ms_median']} ms "
            f"({rows[-1]['fork_ms_min']}-{rows[-1]['fork_ms_max']}), extra disk {rows[-1]['extra_kib_median']} KiB")
    return rows
