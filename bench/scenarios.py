"""The Git scenarios of the benchmark (bench/run.py), the same commands against every server.

    results = git_scenarios_interleaved({"nginx": srv1, "artifactd": srv2}, source, runs=3, ls_calls=200)

Scenarios (every clone is ``--bare``; the repo is served as ``repo.git``):

* ``clone_full``, ``clone_depth1`` (``--depth 1``), ``clone_blobless`` (``--filter=blob:none``);
* ``fetch_10`` -- a client holding ``<branch>~10`` fetches ``<branch>`` (10 new first-parent
  commits; fewer on a shorter history, the number in ``commits``; skipped with one commit).
  ``<branch>`` is what the served repo's HEAD names (``main`` for the generated one);
* ``push_full`` -- ``git push --mirror`` of the whole repository into a new empty repo
  (created untimed before each run: ``git init --bare`` for the baselines, REST for artifactd);
* ``ls_remote`` -- ``git ls-remote`` end to end (process start included), p50/p99;
* ``concurrent_clones`` -- N full clones started together: wall time until the last one
  ends, failures, and the peak resident memory of the server's own processes (every
  process of the server's tree except git's: nginx + fcgiwrap, dulwich's Python, or
  artifactd's Python; see ``OwnRSS``), as PSS sampled every 20 ms, next to its value before.

The servers take turns run by run, in a rotating order, so outside load (a shared
machine) falls on all of them alike. Every scenario records ``error`` instead of
raising, so one server's failure does not stop the run.
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
)
from bench.suite import fetch_client, first_parent_depth, summarize_error

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
    long-lived processes -- those of its tree that are not git and already ran when the
    sampling started (nginx master and workers + fcgiwrap; dulwich's Python; artifactd's
    Python and its workers). git's processes do the packing; their memory is the same
    whichever server runs them, and is in ``report.peak_bytes`` (whole tree, RSS).

    Not counted: a child between fork (or vfork) and exec. It is a copy of its parent,
    or shares its parent's memory outright with vfork, and /proc shows it with all of
    its parent's memory: summing it would count the server twice for that instant.
    """

    def __init__(self, pids, interval: float = 0.02) -> None:
        super().__init__(pids, interval)
        self.own_peak = 0
        self.own_pids = {p for p in process_tree(self.roots) if not is_git_process(p)}

    def own_now(self) -> int:
        return sum(pss_bytes(p) for p in self.own_pids)

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


def _single(fn: Callable[[], Any], before: Callable[[], Any] | None = None) -> tuple[float, float]:
    """(wall, client CPU) of one call of ``fn`` (``before`` untimed)."""
    timing = time_call(fn, 1, before_each=before)
    return timing.samples[0], timing.cpu_samples[0]


class _Scenario:
    """One system's runs of one scenario; records the first error and stops that system."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.cpu: list[float] = []
        self.error: str | None = None

    def run(self, fn: Callable[[], tuple[float, float]] | Callable[[], Latency]) -> None:
        if self.error is not None:
            return
        try:
            r = fn()
        except GitError as e:
            self.error = summarize_error(e.stderr, e.code)
            return
        if isinstance(r, Latency):
            self.samples += r.samples
            self.cpu += r.cpu_samples
        else:
            self.samples.append(r[0])
            self.cpu.append(r[1])

    def result(self, latency: bool = False) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        if latency:
            return _timing(Latency(self.samples, self.cpu))
        return _timing(Timing(self.samples, self.cpu))


def git_scenarios_interleaved(servers: dict[str, GitServer], source: Path, *, runs: int = 3, ls_calls: int = 200,
                              concurrent: int = 16, fetch_behind: int = 10, scenarios: tuple[str, ...] = SCENARIOS,
                              branch: str = "main",
                              log: Callable[[str], None] = print) -> dict[str, dict[str, dict[str, Any]]]:
    """Every scenario against every server (each already serving ``source`` as ``repo.git``),
    the servers taking turns run by run (in a rotating order), so that load from outside
    the benchmark -- the machine may be shared -- falls on all of them alike.

    The fetch starts ``min(fetch_behind, first-parent commits of branch - 1)`` behind, so a
    short history is measured rather than failing in every column."""
    names = list(servers)
    behind = min(fetch_behind, first_parent_depth(source, branch) - 1) if "fetch_10" in scenarios else 0
    work = Path(tempfile.mkdtemp(prefix="bench-git-"))
    out: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    counter = [0]

    def order(i: int) -> list[str]:
        k = i % len(names)
        return names[k:] + names[:k]

    def clone_fn(server: GitServer, args: list[str]) -> Callable[[], tuple[float, float]]:
        def go() -> tuple[float, float]:
            dest = work / f"clone-{counter[0]}"
            counter[0] += 1
            try:
                return _single(lambda: git(["clone", "-q", *args, server.url("repo.git"), str(dest)],
                                           config=server.git_config))
            finally:
                shutil.rmtree(dest, ignore_errors=True)
        return go

    def fetch_fn(server: GitServer) -> Callable[[], tuple[float, float]]:
        dest = work / "fetch-client.git"

        def reset() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            fetch_client(source, dest, behind, branch)

        refspec = f"+refs/heads/{branch}:refs/heads/{branch}"
        return lambda: _single(lambda: git(["fetch", "-q", server.url("repo.git"), refspec],
                                           cwd=dest, config=server.git_config), reset)

    def push_fn(server: GitServer) -> Callable[[], tuple[float, float]]:
        target: list[str] = []

        def fresh() -> None:
            counter[0] += 1
            target[:] = [new_empty_repo(server, f"push-{counter[0]}.git")]

        return lambda: _single(lambda: git(["push", "-q", "--mirror", target[0]], cwd=source,
                                           config=server.git_config, timeout=3600), fresh)

    timed = {
        "clone_full": lambda s: clone_fn(s, ["--bare"]),
        "clone_depth1": lambda s: clone_fn(s, ["--bare", "--depth", "1"]),
        "clone_blobless": lambda s: clone_fn(s, ["--bare", "--filter=blob:none"]),
        "fetch_10": fetch_fn,
    }
    try:
        for scen, make in timed.items():
            if scen not in scenarios:
                continue
            if scen == "fetch_10" and behind < 1:
                for n in names:
                    out[n][scen] = {"skipped": "needs 2+ commits", "commits": 0}
                log(f"  ({scen}: skipped, {branch} has a single commit)")
                continue
            t0 = time.monotonic()
            state = {n: _Scenario() for n in names}
            for i in range(runs):
                for n in order(i):
                    state[n].run(make(servers[n]))
            for n in names:
                out[n][scen] = state[n].result()
                if scen == "fetch_10":
                    out[n][scen]["commits"] = behind
                log(f"[{n}] {scen:<18} {_short(out[n][scen])}")
            log(f"  ({scen}: {time.monotonic() - t0:.0f} s)")
        if "ls_remote" in scenarios:
            state = {n: _Scenario() for n in names}
            block = max(1, min(10, ls_calls))
            rounds = -(-ls_calls // block)
            for i in range(rounds):
                for n in order(i):
                    s = servers[n]
                    state[n].run(lambda: ls_remote_latency(s.url("repo.git"), block, config=s.git_config))
            for n in names:
                out[n]["ls_remote"] = state[n].result(latency=True)
                log(f"[{n}] {'ls_remote':<18} {_short(out[n]['ls_remote'])}")
        if "concurrent_clones" in scenarios:
            for n in names:
                s = servers[n]
                # warm the server at this concurrency without pack data (threads, pools)
                warm = [threading.Thread(target=lambda: git(["ls-remote", s.url("repo.git")], config=s.git_config,
                                                            check=False)) for _ in range(concurrent)]
                for t in warm:
                    t.start()
                for t in warm:
                    t.join()
                out[n]["concurrent_clones"] = concurrent_clones(s, s.url("repo.git"), concurrent)
                log(f"[{n}] {'concurrent_clones':<18} {_short(out[n]['concurrent_clones'])}")
        if "push_full" in scenarios:  # last: it adds repos to the servers (never touches repo.git)
            state = {n: _Scenario() for n in names}
            for i in range(runs):
                for n in order(i):
                    state[n].run(push_fn(servers[n]))
            for n in names:
                out[n]["push_full"] = state[n].result()
                log(f"[{n}] {'push_full':<18} {_short(out[n]['push_full'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _short(r: dict[str, Any]) -> str:
    if "error" in r:
        return "ERROR " + r["error"]
    if "skipped" in r:
        return "skipped: " + r["skipped"]
    if "median_s" in r:
        return f"median {r['median_s']:.3f} s  samples {r['samples_s']}"
    if "p50_ms" in r:
        return f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms"
    if "total_s" in r:
        mem = (f", own PSS {r['server_own_rss_before_mib']} -> {r['server_own_rss_peak_mib']} MiB"
               if "server_own_rss_peak_mib" in r else "")
        return f"{r['clients']} clients {r['total_s']:.2f} s, {r['failures']} failed{mem}"
    return str(r)
