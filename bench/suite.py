"""The benchmark scenarios, run the same way against any ``GitServer``.

Why: artifactd, nginx + git-http-backend, dulwich and file:// must see the
same repository and the same client commands; only the URL (and, for
artifactd, the client's ``-c`` auth config) differ.

    results = run_suite(server, "repo.git", runs=3)      # dict, JSON-friendly
    caps = check_capabilities(server, "repo.git")        # what works, what fails

CLI (also reachable as ``python -m bench.baselines``):
    python -m bench.suite --smoke                       # small repo, every server
    python -m bench.suite --bench --objects 50000 --runs 3 [--servers nginx,dulwich]
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.baselines import BASELINES, DEFAULT_SERVERS, GitServer
from bench.genrepo import generate
from bench.measure import (
    GitError,
    Latency,
    PeakRSS,
    Timing,
    git,
    ls_remote_latency,
    time_call,
    time_clone,
)

MIB = 1 << 20

# --------------------------------------------------------------------------
# Client-side fixtures (untimed)
# --------------------------------------------------------------------------


class PushClient:
    """A bare clone that makes one fresh commit per push (untimed setup).

    Each commit adds an incompressible file of ``size`` bytes on top of
    ``main``; above 1 MiB (git's http.postBuffer) git sends it chunked.
    """

    def __init__(self, source: Path, workdir: Path, size: int) -> None:
        self.dir = workdir / "push-client.git"
        self.size = size
        self.count = 0
        git(["clone", "-q", "--bare", "--single-branch", "--branch", "main", f"file://{source}", str(self.dir)])

    def next_commit(self) -> str:
        self.count += 1
        data = random.Random(f"push-{self.count}").randbytes(self.size)
        blob_file = self.dir / "blob.tmp"
        blob_file.write_bytes(data)
        env = {"GIT_INDEX_FILE": str(self.dir / "bench.index")}
        run = lambda *a: git(list(a), cwd=self.dir, env=env).stdout.strip()
        blob = run("hash-object", "-w", str(blob_file))
        run("read-tree", "main")
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},bench/push-{self.count}.bin")
        tree = run("write-tree")
        blob_file.unlink()
        return run("commit-tree", tree, "-p", "main", "-m", f"bench push {self.count}")


def fetch_client(source: Path, dest: Path, behind: int, branch: str = "main") -> None:
    """A bare repo holding ``branch~behind`` of ``source`` (and nothing newer)."""
    old = git(["rev-parse", f"{branch}~{behind}"], cwd=source).stdout.strip()
    git(["init", "-q", "--bare", str(dest)])
    git(["fetch", "-q", f"file://{source}", f"{old}:refs/heads/{branch}"], cwd=dest,
        config=["uploadpack.allowAnySHA1InWant=true"])


def first_parent_depth(source: Path, branch: str = "main") -> int:
    return int(git(["rev-list", "--count", "--first-parent", branch], cwd=source).stdout)


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


def measured(server: GitServer, fn: Callable[[], Timing | Latency]) -> dict[str, Any]:
    """Run one scenario with server memory and CPU sampling; record errors, don't raise.

    Reports wall time, client CPU (the git processes the harness ran; for
    file:// this includes upload-pack) and server CPU per operation.
    """
    out: dict[str, Any] = {}
    pids = server.pids
    try:
        cpu0 = server.cpu_seconds()
        with PeakRSS(pids) as rss:
            result = fn()
        cpu1 = server.cpu_seconds()
    except GitError as e:
        return {"error": summarize_error(e.stderr, e.code)}
    n = len(result.samples)
    if isinstance(result, Latency):
        out.update(p50_ms=round(result.p50 * 1000, 1), p99_ms=round(result.p99 * 1000, 1),
                   mean_ms=round(result.mean * 1000, 1), n=n)
    else:
        out.update(median_s=round(result.median, 3), samples_s=[round(s, 3) for s in result.samples])
    out["client_cpu_s"] = round(sum(result.cpu_samples) / n, 3)
    if cpu0 is not None and cpu1 is not None:
        out["server_cpu_s"] = round((cpu1 - cpu0) / n, 3)
    if pids:
        out["server_peak_rss_mib"] = round(rss.report.peak_bytes / MIB, 1)
    return out


def run_suite(server: GitServer, repo: str, runs: int = 3, ls_remote_calls: int = 30,
              push_mb: float = 3.0, fetch_behind: int = 50, scenarios: Iterable[str] | None = None,
              source: Path | None = None) -> dict[str, dict[str, Any]]:
    """Time every scenario against ``server.url(repo)``; returns scenario -> numbers.

    ``source`` is a local bare copy of what the server serves (default
    ``server.root / repo``), read for the untimed client fixtures; its default
    branch must be ``main``. Pushes add ``refs/heads/bench/push-N`` on the server.
    """
    url, cfg = server.url(repo), server.git_config
    source = source or server.root / repo
    work = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    behind = min(fetch_behind, first_parent_depth(source) - 1)
    pusher: list[PushClient] = []

    def push() -> Timing:
        if not pusher:
            pusher.append(PushClient(source, work, int(push_mb * MIB)))
        client = pusher[0]
        commits: list[str] = []
        timing = time_call(lambda: git(["push", "-q", url, f"{commits[-1]}:refs/heads/bench/push-{client.count}"],
                                       cwd=client.dir, config=cfg),
                           runs, before_each=lambda: commits.append(client.next_commit()))
        return timing

    def fetch() -> Timing:
        dest = work / "fetch-client.git"

        def reset() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            fetch_client(source, dest, behind)

        return time_call(lambda: git(["fetch", "-q", url, "+refs/heads/main:refs/heads/main"], cwd=dest, config=cfg),
                         runs, before_each=reset)

    table: dict[str, Callable[[], Timing | Latency]] = {
        "ls_remote": lambda: ls_remote_latency(url, ls_remote_calls, config=cfg),
        "ls_remote_v0": lambda: ls_remote_latency(url, ls_remote_calls, config=cfg, protocol=0),
        "clone_full": lambda: time_clone(url, runs, config=cfg),
        "clone_depth1": lambda: time_clone(url, runs, args=["--bare", "--depth", "1"], config=cfg),
        "clone_blobless": lambda: time_clone(url, runs, args=["--bare", "--filter=blob:none"], config=cfg),
        f"fetch_{behind}_commits": fetch,
        f"push_{push_mb:g}mb": push,
    }
    wanted = set(scenarios) if scenarios is not None else None
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, fn in table.items():
            if wanted is None or any(name.startswith(w) for w in wanted):
                results[name] = measured(server, fn)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


# --------------------------------------------------------------------------
# Capability checks (functional, not timed)
# --------------------------------------------------------------------------


def summarize_error(stderr: str, code: int | None = None) -> str:
    """The line of git's stderr that says why: first fatal, else first error, else last."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for prefix in ("fatal:", "error:"):
        hits = [ln for ln in lines if ln.startswith(prefix)]
        if hits:
            return hits[0] + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else "")
    return lines[-1] if lines else f"exit {code}, no message"


def _outcome(fn: Callable[[], Any], needs: Path | None = None) -> str:
    if needs is not None and not needs.exists():
        return "skipped (an earlier check failed)"
    try:
        value = fn()
    except GitError as e:
        return "FAIL: " + summarize_error(e.stderr, e.code)
    return "ok" if value is None else str(value)


def remote_refs(url: str, config: Sequence[str] = ()) -> set[str]:
    """"<oid> <ref>" lines the server advertises (peeled ^{} lines dropped)."""
    out = git(["ls-remote", "--refs", url], config=config).stdout
    return {line.replace("\t", " ") for line in out.splitlines() if not line.endswith("HEAD")}


def check_capabilities(server: GitServer, repo: str, timeout: float = 120.0,
                       source: Path | None = None) -> dict[str, str]:
    """What a stock git client can do through ``server``: "ok", a value, or "FAIL: why".

    Pushes into ``repo``: give it a copy of its own. ``source``: local bare
    copy of it (default ``server.root / repo``).
    """
    url, cfg = server.url(repo), server.git_config
    source = source or server.root / repo
    work = Path(tempfile.mkdtemp(prefix="bench-caps-"))
    run = partial(git, timeout=timeout)
    expected = set(run(["for-each-ref", "--format=%(objectname) %(refname)"], cwd=source).stdout.splitlines())

    def protocol() -> str:
        res = run(["ls-remote", url], config=cfg, env={"GIT_TRACE_PACKET": "1"})
        return "v2" if "< version 2" in res.stderr else "v0"

    def full_clone(dest: str = "full.git") -> None:
        run(["clone", "-q", "--mirror", url, str(work / dest)], config=cfg)
        run(["fsck", "--connectivity-only", "--no-progress"], cwd=work / dest)
        got = set(run(["for-each-ref", "--format=%(objectname) %(refname)"], cwd=work / dest)
                  .stdout.splitlines())
        if got != expected:
            raise GitError(["compare refs"], 1, f"refs differ: {len(got ^ expected)} lines")

    def shallow() -> str:
        run(["clone", "-q", "--depth", "1", url, str(work / "shallow")], config=cfg)
        return run(["rev-list", "--count", "HEAD"], cwd=work / "shallow").stdout.strip() + " commit(s)"

    def deepen() -> str:
        run(["fetch", "-q", "--deepen", "5"], cwd=work / "shallow", config=cfg)
        return run(["rev-list", "--count", "HEAD"], cwd=work / "shallow").stdout.strip() + " commit(s)"

    def unshallow() -> None:
        run(["fetch", "-q", "--unshallow"], cwd=work / "shallow", config=cfg)

    def partial_checkout() -> None:  # checkout, then diff, lazily fetch blobs by id
        run(["clone", "-q", "--filter=blob:none", url, str(work / "partial")], config=cfg)
        run(["diff", "--stat", "HEAD~5", "HEAD"], cwd=work / "partial", config=cfg)

    def push_and_delete() -> None:
        tree = work / "pusher"
        run(["clone", "-q", f"file://{source}", str(tree)])
        (tree / "bench-cap.txt").write_text("capability check\n")
        run(["add", "bench-cap.txt"], cwd=tree)
        run(["commit", "-q", "-m", "capability check"], cwd=tree)
        run(["push", "-q", url, "HEAD:refs/heads/bench/cap"], cwd=tree, config=cfg)
        run(["push", "-q", url, "HEAD:refs/heads/bench/cap2"], cwd=tree, config=cfg)
        run(["push", "-q", url, ":refs/heads/bench/cap"], cwd=tree, config=cfg)

    def incremental_fetch(refspec: str, dest: str) -> None:  # client at main~20, negotiates with haves
        fetch_client(source, work / dest, 20)
        run(["fetch", "-q", url, refspec], cwd=work / dest, config=cfg)

    def clone_after_push() -> None:  # the served repo now has a second, pushed pack
        expected.clear()
        expected.update(remote_refs(url, cfg))
        full_clone("after-push.git")

    checks: dict[str, tuple[Callable[[], Any], Path | None]] = {
        "protocol": (protocol, None), "clone+fsck+refs": (full_clone, None), "depth 1": (shallow, None),
        "deepen 5": (deepen, work / "shallow"), "unshallow": (unshallow, work / "shallow"),
        "blob:none + checkout": (partial_checkout, None),
        "fetch all branches": (partial(incremental_fetch, "+refs/heads/*:refs/heads/*", "fetch-all.git"), None),
        "push + delete": (push_and_delete, None),
        "fetch main after push": (partial(incremental_fetch, "+refs/heads/main:refs/heads/main", "fetch-main.git"),
                                  None),
        "clone after push": (clone_after_push, None),
    }
    try:
        return {name: _outcome(fn, needs) for name, (fn, needs) in checks.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _wall_cell(r: dict[str, Any]) -> str:
    if "error" in r:
        return "FAIL"
    if "p50_ms" in r:
        cell = f"{r['p50_ms']:.0f}/{r['p99_ms']:.0f}ms p50/p99"
    else:
        cell = f"{r['median_s']:.3f}s" if "median_s" in r else "-"
    return cell + (f" [{r['server_peak_rss_mib']:.0f}M]" if "server_peak_rss_mib" in r else "")


def _cpu_cell(r: dict[str, Any]) -> str:
    if "error" in r or "client_cpu_s" not in r:
        return "-"
    return f"{r['client_cpu_s']:.3f} + {r['server_cpu_s']:.3f}" if "server_cpu_s" in r else f"{r['client_cpu_s']:.3f}"


def print_results(all_results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Two tables: wall time [server peak RSS], then CPU seconds client + server per operation."""
    scenarios = list(dict.fromkeys(s for res in all_results.values() for s in res))
    servers = list(all_results)
    for title, cell in (("wall time [server peak RSS]", _wall_cell), ("CPU s/op: client + server", _cpu_cell)):
        print(f"\n{title:<28}" + "".join(f"{s:>28}" for s in servers))
        for sc in scenarios:
            print(f"{sc:<28}" + "".join(f"{cell(all_results[srv].get(sc, {})):>28}" for srv in servers))
    for srv, res in all_results.items():
        for sc, r in res.items():
            if "error" in r:
                print(f"  {srv} {sc}: {r['error']}")
    print("  median of the runs; ls_remote p50/p99 per call; RSS = server process tree, MiB;"
          " file:// client CPU includes upload-pack")


def load_server_class(spec: str) -> type[GitServer]:
    """"package.module:ClassName" -> the class (how artifactd plugs into the CLI)."""
    module, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, GitServer)):
        raise TypeError(f"{spec} is not a bench.baselines.GitServer subclass")
    return cls


def bench_server(cls: type[GitServer], root: Path, source: Path, args: argparse.Namespace,
                 opts: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Start one server, serve ``source`` as repo.git (+ caps.git), run everything."""
    name, t0 = cls.name, time.monotonic()
    caps: dict[str, str] = {}
    with cls(root) as server:
        print(f"[{name}] {server.base_url} (started in {time.monotonic() - t0:.2f} s)", flush=True)
        server.add_repo("repo.git", source)
        scen = args.scenarios.split(",") if args.scenarios else None
        results = run_suite(server, "repo.git", runs=opts["runs"], ls_remote_calls=opts["calls"],
                            scenarios=scen, source=source)
        for sc, r in results.items():
            print(f"[{name}]   {sc:<22} {json.dumps(r)}", flush=True)
        if not args.no_caps:
            server.add_repo("caps.git", source)
            caps = check_capabilities(server, "caps.git", timeout=opts["check_timeout"], source=source)
            for check, outcome in caps.items():
                print(f"[{name}]   {check:<22} {outcome}", flush=True)
    return results, caps


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Run the clone/fetch/push scenarios against the baseline servers.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--smoke", action="store_true", help="small repo, 1 run, capability checks")
    mode.add_argument("--bench", action="store_true", help="full-size repo, timed runs")
    ap.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                    help=f"comma list of {', '.join(BASELINES)} (default {','.join(DEFAULT_SERVERS)})")
    ap.add_argument("--server-class", action="append", default=[], metavar="MODULE:CLASS",
                    help="register another GitServer subclass under its .name (repeatable)")
    ap.add_argument("--repo", type=Path, help="use this bare repo instead of generating one")
    ap.add_argument("--objects", type=int, help="objects of the generated repo (smoke 2000, bench 50000)")
    ap.add_argument("--size-mb", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, help="runs per timed scenario (smoke 1, bench 3)")
    ap.add_argument("--ls-remote-calls", type=int, help="(smoke 10, bench 50)")
    ap.add_argument("--scenarios", help="comma list of name prefixes, e.g. clone,ls_remote (default: all)")
    ap.add_argument("--no-caps", action="store_true", help="skip the capability checks")
    ap.add_argument("--check-timeout", type=float, help="seconds per capability check (smoke 15, bench 300)")
    ap.add_argument("--json", type=Path, help="also write all results here")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM -> SystemExit, so the context managers stop the servers (they run
    # in their own sessions and would otherwise outlive the harness).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    servers = dict(BASELINES)
    for spec in args.server_class:
        cls = load_server_class(spec)
        servers[cls.name] = cls
    opts = {"runs": args.runs or (1 if args.smoke else 3),
            "calls": args.ls_remote_calls or (10 if args.smoke else 50),
            "check_timeout": args.check_timeout or (15.0 if args.smoke else 300.0)}
    base = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        source = args.repo.resolve() if args.repo else base / "source.git"
        if not args.repo:
            objects = args.objects or (2000 if args.smoke else 50_000)
            stats = generate(source, objects=objects, size_mb=args.size_mb, seed=args.seed, bare=True)
            print(f"generated {source}: {stats['objects']} objects, {stats['size_pack_bytes'] / MIB:.1f} MiB "
                  f"packed, {stats['commits']} commits in {stats['seconds']} s", flush=True)
        all_results: dict[str, dict[str, dict[str, Any]]] = {}
        all_caps: dict[str, dict[str, str]] = {}
        for name in (s for s in args.servers.split(",") if s):
            all_results[name], all_caps[name] = bench_server(servers[name], base / name, source, args, opts)
        print_results(all_results)
        if args.json:
            args.json.write_text(json.dumps({"results": all_results, "capabilities": all_caps}, indent=2))
        # dulwich's gaps are expected (and reported); any other failure is a harness/server bug.
        broken = [n for n, c in all_caps.items() if n != "dulwich" and any(v.startswith("FAIL") for v in c.values())]
        return 1 if broken else 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
