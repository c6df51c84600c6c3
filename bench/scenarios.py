"""The Git scenarios of the benchmark (bench/run.py), the same commands against every server.

    results = git_scenarios(server, source, runs=3, ls_calls=200, concurrent=16)

Scenarios (every clone is ``--bare``; the repo is served as ``repo.git``):

* ``clone_full``, ``clone_depth1`` (``--depth 1``), ``clone_blobless`` (``--filter=blob:none``);
* ``fetch_10`` -- a client holding ``main~10`` fetches ``main`` (10 new first-parent commits);
* ``push_full`` -- ``git push --mirror`` of the whole repository into a new empty repo
  (created untimed before each run: ``git init --bare`` for the baselines, REST for artifactd);
* ``ls_remote`` -- ``git ls-remote`` end to end (process start included), p50/p99;
* ``concurrent_clones`` -- N full clones started together: wall time until the last one
  ends, failures, and the peak resident memory of the server's own processes (every
  process of the server's tree except git's: nginx + fcgiwrap, dulwich's Python, or
  artifactd's Python), as PSS sampled every 20 ms, next to its value before the clones.

Every scenario records ``error`` instead of raising, so one server's failure does not
stop the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.baselines import GitServer
from bench.measure import (
    GitError,
    Latency,
    PeakRSS,
    Timing,
    git,
    ls_remote_latency,
    process_tree,
    time_call,
    time_clone,
)
from bench.suite import fetch_client, summarize_error

MIB = 1 << 20
SCENARIOS = ("clone_full", "clone_depth1", "clone_blobless", "fetch_10", "push_full", "ls_remote",
             "concurrent_clones")


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def is_git_process(pid: int) -> bool:
    """git and its helpers (git-upload-pack, git-http-backend, pack-objects run as ``git``)."""
    return _comm(pid).startswith("git")


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class OwnRSS(PeakRSS):
    """``PeakRSS`` that also tracks the server's *own* memory: the PSS summed over its
    process tree, git's processes left out (git's children do the packing; their memory
    is the same whichever server runs them).

    PSS, not RSS: a child between fork and exec is a copy of its parent that shares all
    its pages; summing RSS would count the server twice for that instant.
    """

    def __init__(self, pids, interval: float = 0.02) -> None:
        super().__init__(pids, interval)
        self.own_peak = 0

    def own_now(self) -> int:
        return sum(pss_bytes(p) for p in process_tree(self.roots) if not is_git_process(p))

    def sample(self) -> None:
        super().sample()
        self.own_peak = max(self.own_peak, self.own_now())


def new_empty_repo(server: GitServer, name: str) -> str:
    """An empty repo on ``server`` that accepts a push; returns its URL."""
    create = getattr(server, "create_empty", None)
    if create is not None:
        return create(name)
    subprocess.run(["git", "init", "-q", "--bare", str(server.root / name)], check=True,
                   env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
    return server.url(name)


def _timing(result: Timing | Latency) -> dict[str, Any]:
    if isinstance(result, Latency):
        return {"p50_ms": round(result.p50 * 1000, 2), "p99_ms": round(result.p99 * 1000, 2),
                "mean_ms": round(result.mean * 1000, 2), "n": len(result.samples)}
    return {"median_s": round(result.median, 4), "samples_s": [round(s, 4) for s in result.samples],
            "client_cpu_s": round(result.cpu_median, 3)}


def _run(server: GitServer, fn: Callable[[], Timing | Latency]) -> dict[str, Any]:
    pids = server.pids
    try:
        with OwnRSS(pids) as rss:
            before = rss.own_now() if pids else 0
            result = fn()
    except GitError as e:
        return {"error": summarize_error(e.stderr, e.code)}
    out = _timing(result)
    if pids:
        out.update(server_own_rss_before_mib=round(before / MIB, 1), server_own_rss_peak_mib=round(rss.own_peak / MIB, 1),
                   server_tree_rss_peak_mib=round(rss.report.peak_bytes / MIB, 1))
    return out


def concurrent_clones(server: GitServer, url: str, n: int, timeout: float = 1800) -> dict[str, Any]:
    """``n`` bare clones started at once; wall time until all ended, failures, server memory."""
    work = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    errors: list[str] = []
    barrier = threading.Barrier(n + 1)
    ends: list[float] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            git(["clone", "-q", "--bare", url, str(work / f"c{i}")], config=server.git_config, timeout=timeout)
        except GitError as e:
            errors.append(summarize_error(e.stderr, e.code))
        ends.append(time.perf_counter())

    pids = server.pids
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    try:
        with OwnRSS(pids) as rss:
            before = rss.own_now() if pids else 0
            for t in threads:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in threads:
                t.join()
            total = max(ends) - t0 if ends else 0.0
        ok = sum(1 for i in range(n) if (work / f"c{i}" / "packed-refs").is_file())
        out: dict[str, Any] = {"clients": n, "total_s": round(total, 3), "failures": len(errors),
                               "errors": sorted(set(errors))[:3], "completed": ok}
        if pids:
            out.update(server_own_rss_before_mib=round(before / MIB, 1),
                       server_own_rss_peak_mib=round(rss.own_peak / MIB, 1),
                       server_own_rss_growth_mib=round((rss.own_peak - before) / MIB, 1),
                       server_tree_rss_peak_mib=round(rss.report.peak_bytes / MIB, 1))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def git_scenarios(server: GitServer, source: Path, *, runs: int = 3, ls_calls: int = 200, concurrent: int = 16,
                  fetch_behind: int = 10, scenarios: tuple[str, ...] = SCENARIOS,
                  log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Every scenario against ``server`` (which already serves ``source`` as ``repo.git``)."""
    url = server.url("repo.git")
    cfg = server.git_config  # the live list: artifactd adds a header per repo it creates
    work = Path(tempfile.mkdtemp(prefix="bench-git-"))
    pushes = [0]

    def push() -> Timing:
        target: list[str] = []

        def fresh() -> None:
            pushes[0] += 1
            target[:] = [new_empty_repo(server, f"push-{pushes[0]}.git")]

        return time_call(lambda: git(["push", "-q", "--mirror", target[0]], cwd=source, config=cfg, timeout=3600),
                         runs, before_each=fresh)

    def fetch() -> Timing:
        dest = work / "fetch-client.git"

        def reset() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            fetch_client(source, dest, fetch_behind)

        return time_call(lambda: git(["fetch", "-q", url, "+refs/heads/main:refs/heads/main"], cwd=dest,
                                     config=cfg), runs, before_each=reset)

    table: dict[str, Callable[[], dict[str, Any]]] = {
        "clone_full": lambda: _run(server, lambda: time_clone(url, runs, config=cfg)),
        "clone_depth1": lambda: _run(server, lambda: time_clone(url, runs, args=["--bare", "--depth", "1"],
                                                                config=cfg)),
        "clone_blobless": lambda: _run(server, lambda: time_clone(url, runs, args=["--bare", "--filter=blob:none"],
                                                                  config=cfg)),
        "fetch_10": lambda: _run(server, fetch),
        "ls_remote": lambda: _run(server, lambda: ls_remote_latency(url, ls_calls, config=cfg)),
        "concurrent_clones": lambda: concurrent_clones(server, url, concurrent),
        # last: it adds repos to the server (never touches repo.git)
        "push_full": lambda: _run(server, push),
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, fn in table.items():
            if name not in scenarios:
                continue
            t0 = time.monotonic()
            results[name] = fn()
            log(f"[{server.name}] {name:<18} {_short(results[name])}  ({time.monotonic() - t0:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _short(r: dict[str, Any]) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    if "median_s" in r:
        return f"median {r['median_s']:.3f} s  samples {r['samples_s']}"
    if "p50_ms" in r:
        return f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms"
    if "total_s" in r:
        mem = (f", own RSS {r['server_own_rss_before_mib']} -> {r['server_own_rss_peak_mib']} MiB"
               if "server_own_rss_peak_mib" in r else "")
        return f"{r['clients']} clients {r['total_s']:.2f} s, {r['failures']} failed{mem}"
    return str(r)
