"""The artifactd benchmark, in one command (``bench/run`` installs what it needs first).

    bench/run                       # full: ~50k-object / 35 MiB repo, 3 runs, every section
    bench/run --quick               # smoke: tiny repo, 1 run, small counts (the test suite runs this)
    bench/run --repo PATH           # any local repository (its HEAD branch) instead of the generated one
    bench/run --size-mb 350 --objects 100000 --runs 5
    bench/run --sections git,rest --systems nginx,artifactd

Sections (run in this order):
  rest   repo creations and token mints per second over REST, with latency percentiles
  scale  list and get latency with 100 and with 100,000 repos in one namespace
  forks  fork time and extra disk for ~1, ~35 and ~350 MiB repos
  git    clone (full, --depth 1, --filter=blob:none), fetch of 10 commits (fewer on a
         shorter history), push of the whole repo, ls-remote p50/p99, 16 (--concurrent)
         concurrent clones with server memory; against file://, git http-backend
         (nginx + fcgiwrap), dulwich, artifactd (SQLite) and artifactd (PostgreSQL), all
         started by this run on this machine

Writes ``results.json``, ``results.md`` and PNG charts to ``--results`` (default
bench/results/; this run's files of an earlier run are removed first). Generated
repositories and ``--repo`` copies are cached in ``--cache`` (default bench/.cache/).
Relative paths mean the directory bench/run was started from. Bad arguments stop the
run before any section (exit code 2); a failed measurement makes it exit with 1 once the
results are written.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
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
    PG_DEFAULT,
    ArtifactdFromSource,
    ArtifactdPostgres,
    ArtifactdServer,
    ArtifactdWorkers2,
)
from bench.baselines import DulwichWeb, FileURL, GitServer, NginxHttpBackend  # noqa: E402
from bench.genrepo import generate  # noqa: E402
from bench.measure import git  # noqa: E402

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
DEFAULT_REST_SYSTEMS = "artifactd,artifactd-pg,artifactd-w2"
QUICK_REST_SYSTEMS = "artifactd,artifactd-pg"
SECTIONS = ("rest", "scale", "forks", "git")


def log(msg: str) -> None:
    print(msg, flush=True)


def log_failure(what: str, e: BaseException) -> None:
    """One line on stdout (next to the numbers), the traceback on stderr."""
    log(f"[{what}] FAILED: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    print(traceback.format_exc(), file=sys.stderr, flush=True)


#: bench/run exports the directory it was run from before it cd's to the repo root
CWD_ENV = "ARTIFACTD_BENCH_CWD"
EPILOG = f"""environment:
  ARTIFACTD_BENCH_DATABASE  PostgreSQL server the artifactd-pg runs create a temporary
                            database on (default {PG_DEFAULT})
"""


def caller_dir() -> Path:
    """The directory relative paths mean: where the user ran ``bench/run`` (which cd's to
    the repo root, so it passes its $PWD on), else this process's own."""
    return Path(os.environ.get(CWD_ENV) or os.getcwd())


def count(text: str) -> int:
    """argparse type of a count option: a whole number >= 1 (0 used to become the default)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return v


def counts(text: str) -> list[int]:
    """A comma list of counts (``--fork-sizes 1,35``)."""
    out = [count(x.strip()) for x in text.split(",") if x.strip()]
    if not out:
        raise argparse.ArgumentTypeError("needs at least one size")
    return out


def names(text: str) -> list[str]:
    """A comma list, duplicates dropped (a system measured twice would share one slot)."""
    return list(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke run: tiny repo, one run, small counts")
    add("--repo", type=Path, metavar="PATH",
        help="benchmark this local repository (its HEAD branch) instead of the generated one")
    add("--objects", type=count, metavar="N", help="objects of the generated repo (default 50000; quick 1500)")
    add("--size-mb", type=positive, metavar="MIB",
        help="packed size of the generated repo (default 35 per 50k objects)")
    add("--runs", type=count, metavar="N", help="runs per timed scenario, the median is reported (default 3; quick 1)")
    add("--ls-remote-calls", type=count, metavar="N", help="ls-remote calls for p50/p99 (default 200; quick 10)")
    add("--concurrent", type=count, metavar="N", help="concurrent clones (default 16; quick 4)")
    add("--systems", type=names, metavar="LIST",
        help=f"comma list of {', '.join(SYSTEMS)} (default {DEFAULT_SYSTEMS})")
    add("--sections", type=names, metavar="LIST", default=list(SECTIONS),
        help=f"comma list of {', '.join(SECTIONS)} (default all)")
    add("--rest-requests", type=count, metavar="N", help="REST creations / mints measured (default 2000; quick 50)")
    add("--rest-concurrency", type=count, metavar="N", default=4,
        help="client connections for the REST rates (default 4)")
    add("--rest-systems", type=names, metavar="LIST", help="artifactd flavours for rest/scale "
        f"({', '.join(REST_SYSTEMS)}; default {DEFAULT_REST_SYSTEMS}, quick {QUICK_REST_SYSTEMS})")
    add("--fork-sizes", type=counts, metavar="LIST",
        help="comma list of repo sizes in MiB for forks (default 1,35,350; quick 1)")
    add("--forks", type=count, metavar="N", help="forks per size (default 5; quick 2)")
    add("--scale-repos", type=count, metavar="N", help="repos in the big namespace (default 100000; quick 500)")
    add("--compare-src", type=Path, metavar="DIR", help="also measure artifactd (SQLite) run from this source tree "
        "(e.g. a worktree of an older commit) as system 'artifactd-base', in git and rest")
    add("--results", type=Path, metavar="DIR", help="output folder (default bench/results)")
    add("--cache", type=Path, metavar="DIR",
        help="generated repos and --repo copies are kept here (default bench/.cache)")
    return ap


def parse_args(argv: list[str] | None, ap: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Arguments with their defaults filled in, every one checked: bad input stops here
    (``ap.error``: one line, exit code 2), before minutes of other sections ran."""
    ap = ap or parser()
    args = ap.parse_args(argv)
    q = args.quick
    here = caller_dir()
    for key in ("repo", "results", "cache", "compare_src"):
        p = getattr(args, key)
        if p is not None:
            setattr(args, key, (here / p.expanduser()).resolve())
    args.results = args.results or HERE / "results"
    args.cache = args.cache or HERE / ".cache"
    # `is None`, not `or`: an explicit 0 is refused by count(), never turned into the default
    args.objects = (1500 if q else 50_000) if args.objects is None else args.objects
    args.runs = (1 if q else 3) if args.runs is None else args.runs
    args.ls_remote_calls = (10 if q else 200) if args.ls_remote_calls is None else args.ls_remote_calls
    args.concurrent = (4 if q else 16) if args.concurrent is None else args.concurrent
    args.rest_requests = (50 if q else 2000) if args.rest_requests is None else args.rest_requests
    args.fork_sizes = ([1] if q else [1, 35, 350]) if args.fork_sizes is None else args.fork_sizes
    args.forks = (2 if q else 5) if args.forks is None else args.forks
    args.scale_repos = (500 if q else 100_000) if args.scale_repos is None else args.scale_repos
    # explicit lists are what the user asked for; defaults may lose a system (check_postgres)
    args.systems_given = args.systems is not None
    args.rest_systems_given = args.rest_systems is not None
    if args.systems is None:
        args.systems = names(DEFAULT_SYSTEMS)
    if args.rest_systems is None:
        args.rest_systems = names(QUICK_REST_SYSTEMS if q else DEFAULT_REST_SYSTEMS)
    if args.compare_src:
        if not (args.compare_src / "artifactd" / "__init__.py").is_file():
            ap.error(f"--compare-src {args.compare_src}: not an artifactd source tree (no artifactd/__init__.py)")
        ArtifactdFromSource.source_dir = str(args.compare_src)
        for lst in (args.systems, args.rest_systems):
            if "artifactd-base" not in lst:
                lst.append("artifactd-base")
    for s in args.systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r} (--systems takes {', '.join(SYSTEMS)})")
    for s in args.sections:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r} (--sections takes {', '.join(SECTIONS)})")
    for s in args.rest_systems:
        if s not in REST_SYSTEMS:
            ap.error(f"unknown rest system {s!r} (--rest-systems takes {', '.join(REST_SYSTEMS)})")
    if not args.sections:
        ap.error("--sections is empty")
    if "git" in args.sections and not args.systems:
        ap.error("--systems is empty")
    if {"rest", "scale"} & set(args.sections) and not args.rest_systems:
        ap.error("--rest-systems is empty")
    if args.repo is not None:
        problem = repo_problem(args.repo)
        if problem:
            ap.error(problem)
    for option, folder in (("--results", args.results), ("--cache", args.cache)):
        problem = folder_problem(folder)
        if problem:  # found now, not after the results of an earlier run were cleared
            ap.error(f"{option} {folder}: {problem}")
    return args


def folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot hold output (None: it can; it is created if missing)."""
    if folder.exists() and not folder.is_dir():
        return "not a directory"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return e.strerror or type(e).__name__
    if not os.access(folder, os.W_OK | os.X_OK):
        return "not writable"
    return None


def _git_out(repo: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``git -C repo argv`` in the harness's hermetic client environment, unchecked."""
    return git(["-C", str(repo), *argv], check=False)


def repo_problem(src: Path) -> str | None:
    """Why ``--repo src`` cannot be benchmarked, in one line (None: it can). Told apart
    here because git's own message for a plain folder says it "does not exist", and an
    empty repository only failed after the other sections had run."""
    if not src.exists():
        return f"--repo {src}: no such directory"
    if not src.is_dir():
        return f"--repo {src}: not a directory"
    r = _git_out(src, "rev-parse", "--is-bare-repository", "--absolute-git-dir")
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["?"])[0].removeprefix("fatal: ")
        return f"--repo {src}: not a git repository" + ("" if "not a git repository" in why else f" ({why})")
    bare, git_dir = r.stdout.split("\n")[:2]
    top = git_dir if bare == "true" else _git_out(src, "rev-parse", "--show-toplevel").stdout.strip()
    if Path(git_dir).resolve() != src and (not top or Path(top).resolve() != src):
        return f"--repo {src}: not a git repository (a folder inside the one at {top or git_dir}; pass that)"
    branch = _git_out(src, "symbolic-ref", "-q", "HEAD").stdout.strip()
    if _git_out(src, "rev-parse", "--verify", "-q", "HEAD^{commit}").returncode != 0:
        if not _git_out(src, "for-each-ref", "--count=1").stdout.strip():
            return f"--repo {src}: the repository has no commits"
        return f"--repo {src}: HEAD ({branch or '?'}) has no commits; the benchmark serves HEAD's branch"
    if not branch.startswith("refs/heads/"):
        return f"--repo {src}: HEAD is detached; check out the branch to benchmark (its HEAD branch is served)"
    return None


def postgres_problem(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, in one line (None: it answers)."""
    from sqlalchemy import create_engine, text

    from artifactd.store.db import normalize_url

    engine = None
    try:
        engine = create_engine(normalize_url(url), connect_args={"connect_timeout": 5})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:
        msg = str(getattr(e, "orig", None) or e).strip()
        return (msg.splitlines() or [type(e).__name__])[0][:200]
    finally:
        if engine is not None:
            engine.dispose()
    return None


def public_url(url: str) -> str:
    """``url`` without its password (it goes into results.md)."""
    return re.sub(r"^([^:/]+://[^:@/]*):[^@/]*@", r"\1@", url)


def check_postgres(args: argparse.Namespace, ap: argparse.ArgumentParser) -> list[str]:
    """Reach PostgreSQL once, before any section, if a selected section would use it.
    Unreachable: systems the user named fail the run now (``ap.error``); default ones
    are dropped, with the warning returned (for results.md). It used to fail later, in
    every section, with a SQLAlchemy traceback each."""
    pg = "artifactd-pg"
    uses = [("--systems", args.systems, args.systems_given, "git" in args.sections),
            ("--rest-systems", args.rest_systems, args.rest_systems_given,
             bool({"rest", "scale"} & set(args.sections)))]
    uses = [u for u in uses if u[3] and pg in u[1]]
    if not uses:
        return []
    url = os.environ.get("ARTIFACTD_BENCH_DATABASE") or PG_DEFAULT
    problem = postgres_problem(url)
    if problem is None:
        return []
    where = f"PostgreSQL at {public_url(url)} unreachable ({problem})"
    asked = [opt for opt, _, given, _ in uses if given]
    if asked:
        ap.error(f"{where}: {pg} was asked for in {' and '.join(asked)}; start PostgreSQL, "
                 f"set ARTIFACTD_BENCH_DATABASE, or leave {pg} out")
    for _, lst, _, _ in uses:
        lst.remove(pg)
    warning = (f"{where}: {pg} skipped; set ARTIFACTD_BENCH_DATABASE or pass --systems/--rest-systems "
               f"without {pg} to silence this")
    print(f"bench/run: warning: {warning}", file=sys.stderr, flush=True)
    return [warning]


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
        bare = given_mirror(args.repo, args.cache)
        return bare, {"path": str(args.repo), "given": True, **_repo_stats(bare)}
    size = args.size_mb if args.size_mb is not None else args.objects * 35 / 50_000
    name = f"genrepo-{args.objects}obj-{size:g}mb-seed1.git"  # the name bench.forksizes uses too
    src = args.cache / name
    if not (src / "HEAD").exists() or not (src / "packed-refs").exists():
        shutil.rmtree(src, ignore_errors=True)
        args.cache.mkdir(parents=True, exist_ok=True)
        log(f"generating {src.name} ...")
        stats = generate(src, objects=args.objects, size_mb=size, seed=1, bare=True)
        log(f"  {stats['objects']} objects, {report.size(stats['size_pack_bytes'] / 1024)} packed, "
            f"{stats['commits']} commits in {stats['seconds']} s")
    return src, {"path": str(src), "given": False, **_repo_stats(src)}


def _refs(repo: Path) -> str:
    """Every ref with its object, and what HEAD names: equal means an up-to-date mirror."""
    return (_git_out(repo, "for-each-ref", "--format=%(objectname) %(refname)").stdout
            + _git_out(repo, "symbolic-ref", "-q", "HEAD").stdout)


def given_mirror(src: Path, cache: Path) -> Path:
    """The bare mirror of ``--repo src`` in ``cache``, one per source path (a stable
    digest of it: ``hash()`` of a str differs in every process, so each run used to
    leave a new copy behind), reused while the source's refs are unchanged and cloned
    afresh when they moved (a local clone hard-links the source's packs, so the mirror
    is served in the source's own pack state, which a fetch into it would not keep)."""
    digest = hashlib.sha256(str(src).encode()).hexdigest()[:12]
    bare = cache / f"given-{src.name.removesuffix('.git') or 'repo'}-{digest}.git"
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("given-[0-9]*.git"):  # the per-process names of before
        if old.name.removeprefix("given-").removesuffix(".git").isdigit():
            log(f"removing {old.name} (a copy an earlier bench/run left behind)")
            shutil.rmtree(old, ignore_errors=True)
    if (bare / "HEAD").exists() and _refs(bare) == _refs(src):
        log(f"--repo copy {bare.name}: up to date")
        return bare
    stale = bare.exists()
    shutil.rmtree(bare, ignore_errors=True)
    r = subprocess.run(["git", "clone", "-q", "--mirror", str(src), str(bare)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"git clone --mirror {src}: {r.stderr.strip()}")
    log(f"--repo copy {bare.name}: {'cloned afresh (the source moved)' if stale else 'cloned'}")
    return bare


def _repo_stats(repo: Path) -> dict[str, Any]:
    out = subprocess.run(["git", "count-objects", "-v"], cwd=repo, capture_output=True, text=True).stdout
    kv = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    commits = subprocess.run(["git", "rev-list", "--all", "--count"], cwd=repo, capture_output=True,
                             text=True).stdout.strip()
    branch = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    return {"objects": int(kv.get("in-pack", 0)) + int(kv.get("count", 0)),
            "pack_mib": round(int(kv.get("size-pack", 0)) / 1024, 1), "pack_kib": int(kv.get("size-pack", 0)),
            "loose_objects": int(kv.get("count", 0)), "loose_kib": int(kv.get("size", 0)),
            "commits": int(commits or 0), "branch": branch or "main"}


# -- sections -----------------------------------------------------------------------------


def section_git(args: argparse.Namespace, source: Path, branch: str, work: Path) -> dict[str, Any]:
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
                log_failure(f"{name} start", e)
                out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        log(f"== git: {', '.join(servers)} taking turns")
        res = git_scenarios_interleaved(servers, source, runs=args.runs, ls_calls=args.ls_remote_calls,
                                        concurrent=args.concurrent, branch=branch, log=log)
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
            log_failure(name, e)
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    return out


def section_forks(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench.forksizes import fork_sizes, source_repo as fork_source

    log("== forks (artifactd, SQLite)")
    try:
        sources = {size: fork_source(args.cache, size, log) for size in args.fork_sizes}
        with ArtifactdServer(work / "forks") as server:
            return {"artifactd": fork_sizes(server, sources, args.forks, log)}
    except Exception as e:
        log_failure("forks", e)
        return {"artifactd": {"error": f"{type(e).__name__}: {str(e)[:500]}"}}


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
            log_failure(name, e)
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = parse_args(argv, ap)
    warnings = check_postgres(args, ap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    started = time.time()
    results: dict[str, Any] = {
        "command": " ".join(["bench/run", *(sys.argv[1:] if argv is None else argv)]),
        "commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "compare_src": str(args.compare_src) if args.compare_src else None,
        "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "settings": {"runs": args.runs, "ls_remote_calls": args.ls_remote_calls, "concurrent": args.concurrent,
                     "rest_requests": args.rest_requests, "rest_concurrency": args.rest_concurrency,
                     "fork_sizes": args.fork_sizes, "forks": args.forks, "scale_repos": args.scale_repos,
                     "systems": args.systems, "rest_systems": args.rest_systems, "sections": args.sections},
        "warnings": warnings, "errors": [],
    }
    work = Path(tempfile.mkdtemp(prefix="artifactd-bench-"))
    args.results.mkdir(parents=True, exist_ok=True)
    results["machine"]["cpu_probe_ms_start"] = cpu_probe_ms()

    def git_section() -> dict[str, Any]:
        source, results["repo"] = source_repo(args)
        log(f"repository: {results['repo']}")
        return section_git(args, source, results["repo"]["branch"], work)

    runners = {"rest": lambda: section_rest(args, work), "scale": lambda: section_scale(args, work),
               "forks": lambda: section_forks(args, work), "git": git_section}
    try:
        # REST rates are absolute figures, so they run first, before the long Git section
        # has had the CPU busy for minutes (this VM was seen to slow down by 1.5x under
        # sustained load: cpu_probe_ms tells). Git figures are ratios between servers
        # that take turns, which such a drift does not move.
        for name in SECTIONS:
            if name not in args.sections:
                continue
            try:
                results[name] = runners[name]()
            except Exception as e:  # recorded (it fails the run); the next sections still run
                log_failure(name, e)
                results["errors"].append(f"{name}: {type(e).__name__}: {str(e)[:500]}")
    finally:
        results["machine"]["cpu_probe_ms_end"] = cpu_probe_ms()
        results["machine"]["load_average_end"] = os.getloadavg()
        results["seconds"] = round(time.time() - started, 1)
        shutil.rmtree(work, ignore_errors=True)
        paths = report.write(results, args.results)
        log(f"results: {', '.join(str(p) for p in paths)}")
    print()
    print(report.markdown(results), flush=True)
    failed = report.failures(results)
    if failed:
        print(f"bench/run: {len(failed)} measurement(s) failed (the results above and in {args.results} "
              "are incomplete):", file=sys.stderr)
        for f in failed:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
