"""The artifactd benchmark, in one command (``bench/run`` installs what it needs first).

    bench/run                       # full: ~50k-object / 35 MiB repo, 3 runs, every section
    bench/run --quick               # smoke: tiny repo, 1 run, small counts (the test suite runs this)
    bench/run --repo PATH           # any local repository instead of the generated one
    bench/run --size-mb 350 --objects 100000 --runs 5
    bench/run --sections git,rest --systems nginx,artifactd

Sections (run in this order):
  rest   repo creations and token mints per second over REST, with latency percentiles
  scale  list and get latency with 100 and with 100,000 repos in one namespace
  forks  fork time and extra disk for ~1, ~35 and ~350 MiB repos
  git    clone (full, --depth 1, --filter=blob:none), fetch of 10 commits, push of the whole
         repo, ls-remote p50/p99, 16 concurrent clones with server memory; against
         file://, git http-backend (nginx + fcgiwrap), dulwich, artifactd (SQLite) and
         artifactd (PostgreSQL), all started by this run on this machine

Writes ``results.json``, ``results.md`` and PNG charts to ``--results`` (default
bench/results/). Generated repositories are cached in bench/.cache/.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402
from bench.artifactd_server import (  # noqa: E402
    ArtifactdFromSource,
    ArtifactdPostgres,
    ArtifactdServer,
    ArtifactdWorkers2,
)
from bench.baselines import DulwichWeb, FileURL, GitServer, NginxHttpBackend  # noqa: E402
from bench.genrepo import generate  # noqa: E402

SYSTEMS: dict[str, Any] = {
    "file": FileURL,
    "nginx": lambda root: NginxHttpBackend(root, cgi_workers=16),
    "dulwich": DulwichWeb,
    "artifactd": ArtifactdServer,
    "artifactd-pg": ArtifactdPostgres,
    "artifactd-w2": ArtifactdWorkers2,
    "artifactd-base": ArtifactdFromSource,
}
DEFAULT_SYSTEMS = "file,nginx,dulwich,artifactd,artifactd-pg"
#: artifactd flavours measured by the REST and scale sections
REST_SYSTEMS = {"artifactd": ArtifactdServer, "artifactd-pg": ArtifactdPostgres, "artifactd-w2": ArtifactdWorkers2,
                "artifactd-base": ArtifactdFromSource}
SECTIONS = ("rest", "scale", "forks", "git")
MIB = 1 << 20


def log(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny repo, one run, small counts")
    ap.add_argument("--repo", type=Path, help="benchmark this local repository instead of the generated one")
    ap.add_argument("--objects", type=int, help="objects of the generated repo (default 50000; quick 1500)")
    ap.add_argument("--size-mb", type=float, help="packed size of the generated repo (default 35 per 50k objects)")
    ap.add_argument("--runs", type=int, help="runs per timed scenario, the median is reported (default 3; quick 1)")
    ap.add_argument("--ls-remote-calls", type=int, help="ls-remote calls for p50/p99 (default 200; quick 10)")
    ap.add_argument("--concurrent", type=int, help="concurrent clones (default 16; quick 4)")
    ap.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"comma list of {', '.join(SYSTEMS)}")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--rest-requests", type=int, help="REST creations / mints measured (default 2000; quick 50)")
    ap.add_argument("--rest-concurrency", type=int, default=4, help="client connections for the REST rates")
    ap.add_argument("--rest-systems", help="artifactd flavours for rest/scale "
                    f"({', '.join(REST_SYSTEMS)}; default all, quick artifactd,artifactd-pg)")
    ap.add_argument("--fork-sizes", help="comma list of repo sizes in MiB for forks (default 1,35,350; quick 1)")
    ap.add_argument("--forks", type=int, help="forks per size (default 5; quick 2)")
    ap.add_argument("--scale-repos", type=int, help="repos in the big namespace (default 100000; quick 500)")
    ap.add_argument("--compare-src", type=Path, help="also measure artifactd (SQLite) run from this source tree "
                    "(e.g. a worktree of an older commit) as system 'artifactd-base', in git and rest")
    ap.add_argument("--results", type=Path, default=HERE / "results", help="output folder (default bench/results)")
    ap.add_argument("--cache", type=Path, default=HERE / ".cache", help="generated repos are kept here")
    args = ap.parse_args(argv)
    q = args.quick
    args.objects = args.objects or (1500 if q else 50_000)
    args.runs = args.runs or (1 if q else 3)
    args.ls_remote_calls = args.ls_remote_calls or (10 if q else 200)
    args.concurrent = args.concurrent or (4 if q else 16)
    args.rest_requests = args.rest_requests or (50 if q else 2000)
    args.rest_systems = args.rest_systems or ("artifactd,artifactd-pg" if q else "artifactd,artifactd-pg,artifactd-w2")
    args.fork_sizes = [int(x) for x in (args.fork_sizes or ("1" if q else "1,35,350")).split(",") if x]
    args.forks = args.forks or (2 if q else 5)
    args.scale_repos = args.scale_repos or (500 if q else 100_000)
    args.systems = [s for s in args.systems.split(",") if s]
    args.sections = [s for s in args.sections.split(",") if s]
    args.rest_systems = [s for s in args.rest_systems.split(",") if s]
    if args.compare_src:
        ArtifactdFromSource.source_dir = str(args.compare_src.resolve())
        for lst in (args.systems, args.rest_systems):
            if "artifactd-base" not in lst:
                lst.append("artifactd-base")
    for s in args.systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}")
    for s in args.sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")
    for s in args.rest_systems:
        if s not in REST_SYSTEMS:
            ap.error(f"unknown rest system {s!r}")
    return args


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "git": _version(["git", "--version"]), "nginx": _version(["nginx", "-v"]),
        "load_average_start": os.getloadavg(),
    }
    try:
        import dulwich

        info["dulwich"] = ".".join(map(str, dulwich.__version__))
    except ImportError:
        info["dulwich"] = None
    with open("/proc/meminfo") as f:
        info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    return info


def cpu_probe_ms() -> float:
    """Milliseconds of a fixed single-core workload (best of 5): how fast this machine
    is right now, so runs on a shared or throttled VM can be compared."""
    import hashlib

    data = b"x" * (1 << 20)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(40):
            hashlib.sha256(data).digest()
        sum(i * i for i in range(200_000))
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


def source_repo(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """A bare repository to serve: ``--repo`` (a bare mirror of it) or the generated one."""
    if args.repo:
        src = args.repo.resolve()
        bare = args.cache / f"given-{abs(hash(str(src))) % 10**8}.git"
        shutil.rmtree(bare, ignore_errors=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--mirror", str(src), str(bare)], check=True)
        # the scenarios fetch/clone "main": make sure it exists
        head = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=bare, capture_output=True,
                              text=True).stdout.strip()
        if head and head != "main":
            subprocess.run(["git", "branch", "-f", "main", head], cwd=bare, check=True)
            subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=bare, check=True)
        return bare, {"path": str(src), "given": True, **_repo_stats(bare)}
    size = args.size_mb if args.size_mb is not None else args.objects * 35 / 50_000
    name = f"genrepo-{args.objects}obj-{size:g}mb-seed1.git"  # the name bench.forksizes uses too
    src = args.cache / name
    if not (src / "HEAD").exists() or not (src / "packed-refs").exists():
        shutil.rmtree(src, ignore_errors=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        log(f"generating {src.name} ...")
        stats = generate(src, objects=args.objects, size_mb=size, seed=1, bare=True)
        log(f"  {stats['objects']} objects, {stats['size_pack_bytes'] / MIB:.1f} MiB packed, "
            f"{stats['commits']} commits in {stats['seconds']} s")
    return src, {"path": str(src), "given": False, **_repo_stats(src)}


def _repo_stats(repo: Path) -> dict[str, Any]:
    out = subprocess.run(["git", "count-objects", "-v"], cwd=repo, capture_output=True, text=True).stdout
    kv = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    commits = subprocess.run(["git", "rev-list", "--all", "--count"], cwd=repo, capture_output=True,
                             text=True).stdout.strip()
    return {"objects": int(kv.get("in-pack", 0)) + int(kv.get("count", 0)),
            "pack_mib": round(int(kv.get("size-pack", 0)) / 1024, 1), "commits": int(commits or 0)}


# -- sections -----------------------------------------------------------------------------


def section_git(args: argparse.Namespace, source: Path, work: Path) -> dict[str, Any]:
    """All systems up at once, taking turns run by run (bench.scenarios)."""
    import contextlib

    from bench.scenarios import git_scenarios_interleaved

    out: dict[str, Any] = {}
    servers: dict[str, GitServer] = {}
    with contextlib.ExitStack() as stack:
        for name in args.systems:
            try:
                server = stack.enter_context(SYSTEMS[name](work / f"git-{name}"))
                t0 = time.monotonic()
                server.add_repo("repo.git", source)
                log(f"[{name}] serving at {server.base_url or 'file://'} (repo added in {time.monotonic() - t0:.1f} s)")
                servers[name] = server
            except Exception as e:  # one broken system must not lose the others' numbers
                log(f"[{name}] FAILED to start: {e}\n{traceback.format_exc()}")
                out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        log(f"== git: {', '.join(servers)} taking turns")
        res = git_scenarios_interleaved(servers, source, runs=args.runs, ls_calls=args.ls_remote_calls,
                                        concurrent=args.concurrent, log=log)
    return {name: out.get(name) or res.get(name, {}) for name in args.systems}


def section_rest(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench.rest_load import create_rate, mint_rate

    out: dict[str, Any] = {}
    for name in args.rest_systems:
        log(f"== rest: {name}")
        try:
            with REST_SYSTEMS[name](work / f"rest-{name}") as server:
                srv = server.srv
                res = {"create": create_rate(srv, args.rest_requests, args.rest_concurrency),
                       "mint": mint_rate(srv, args.rest_requests, args.rest_concurrency),
                       "create_sequential": create_rate(srv, max(50, args.rest_requests // 4), 1)}
                for k, r in res.items():
                    log(f"[{name}] {k:<18} {r['per_second']:7.1f}/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"
                        f"  (concurrency {r['concurrency']}, {r['errors']} errors)")
                out[name] = res
        except Exception as e:
            log(f"[{name}] FAILED: {e}\n{traceback.format_exc()}")
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    return out


def section_forks(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench.forksizes import fork_sizes, source_repo as fork_source

    log("== forks (artifactd, SQLite)")
    sources = {size: fork_source(args.cache, size, log) for size in args.fork_sizes}
    with ArtifactdServer(work / "forks") as server:
        return {"artifactd": fork_sizes(server, sources, args.forks, log)}


def section_scale(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench.rest_load import scale_latency

    out: dict[str, Any] = {}
    for name in [n for n in args.rest_systems if n not in ("artifactd-w2", "artifactd-base")]:
        log(f"== scale: {name}")
        try:
            with REST_SYSTEMS[name](work / f"scale-{name}") as server:
                out[name] = scale_latency(server.srv, server.database_url(), big=args.scale_repos,
                                          calls=20 if args.quick else 200, log=log)
        except Exception as e:
            log(f"[{name}] FAILED: {e}\n{traceback.format_exc()}")
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = time.time()
    results: dict[str, Any] = {
        "command": "bench/run " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "compare_src": str(args.compare_src) if args.compare_src else None,
        "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "settings": {"runs": args.runs, "ls_remote_calls": args.ls_remote_calls, "concurrent": args.concurrent,
                     "rest_requests": args.rest_requests, "rest_concurrency": args.rest_concurrency,
                     "fork_sizes": args.fork_sizes, "forks": args.forks, "scale_repos": args.scale_repos},
    }
    work = Path(tempfile.mkdtemp(prefix="artifactd-bench-"))
    args.results.mkdir(parents=True, exist_ok=True)
    results["machine"]["cpu_probe_ms_start"] = cpu_probe_ms()
    try:
        # REST rates are absolute figures, so they run first, before the long Git section
        # has had the CPU busy for minutes (this VM was seen to slow down by 1.5x under
        # sustained load: cpu_probe_ms tells). Git figures are ratios between servers
        # that take turns, which such a drift does not move.
        if "rest" in args.sections:
            results["rest"] = section_rest(args, work)
        if "scale" in args.sections:
            results["scale"] = section_scale(args, work)
        if "forks" in args.sections:
            results["forks"] = section_forks(args, work)
        if "git" in args.sections:
            source, results["repo"] = source_repo(args)
            log(f"repository: {results['repo']}")
            results["git"] = section_git(args, source, work)
    finally:
        results["machine"]["cpu_probe_ms_end"] = cpu_probe_ms()
        results["machine"]["load_average_end"] = os.getloadavg()
        results["seconds"] = round(time.time() - started, 1)
        shutil.rmtree(work, ignore_errors=True)
        paths = report.write(results, args.results)
        log(f"results: {', '.join(str(p) for p in paths)}")
    print()
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
