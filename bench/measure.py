"""Small timing helpers for Git benchmarks.

Why: every comparison in bench/ boils down to "run this git command a few
times against server X and take the median", "how long does a ref listing
take", and "how much memory did the server use meanwhile". Keeping those in one
place keeps every server measured the same way.

    time_git(["clone", "--bare", url, "{tmp}"], runs=5)   -> Timing (median, ...)
    time_clone(url, runs=3, args=["--depth", "1"])        -> Timing (+ client CPU)
    tree_cpu_seconds(server.pids)                          -> CPU used so far by a process tree
    ls_remote_latency(url, calls=50)                       -> Latency (p50, p99)
    with PeakRSS(server.pids) as rss: ...                  -> rss.peak_bytes
    peak_rss_during(server.pids, fn, *args)                -> (fn's result, RSSReport)
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds before a git command is considered hung and killed.
DEFAULT_TIMEOUT = 900.0


# --------------------------------------------------------------------------
# Running git
# --------------------------------------------------------------------------


def client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Hermetic client environment: no user/system config, never prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.org",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.org", LC_ALL="C")
    env.update(extra or {})
    return env


def git(args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None, config: Iterable[str] = (),
        env: Mapping[str, str] | None = None, check: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``git -c <config>... <args>`` quietly; raise GitError with its stderr on failure.

    On ``timeout`` the whole process group is killed (git's helpers such as
    remote-http and fetch-pack included): some servers make clients hang.
    """
    argv = ["git", *(x for c in config for x in ("-c", c)), *args]
    proc = subprocess.Popen(argv, cwd=cwd, env=client_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise GitError(argv, -9, f"{err}\ntimed out after {timeout} s (killed)") from None
    res = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and res.returncode != 0:
        raise GitError(argv, res.returncode, res.stderr)
    return res


class GitError(RuntimeError):
    """A git command failed; carries its argv, exit code and stderr."""

    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} -> exit {code}\n{stderr.strip()[-2000:]}")
        self.argv, self.code, self.stderr = list(argv), code, stderr


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock samples in seconds, summarised by the median.

    ``cpu_samples``: CPU seconds (user+sys) of the client's git processes per
    run; on a loaded machine these move far less than wall time.
    """

    samples: list[float] = field(default_factory=list)
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples) if self.cpu_samples else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def __str__(self) -> str:
        return f"{self.median:.3f}s (min {self.min:.3f}, max {self.max:.3f}, n={len(self.samples)})"


@dataclass
class Latency:
    """Latency samples in seconds with the usual percentiles (+ client CPU per call)."""

    samples: list[float]
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    def __str__(self) -> str:
        return f"p50 {self.p50 * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms (n={len(self.samples)})"


def percentile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not samples:
        raise ValueError("no samples")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def children_cpu_seconds() -> float:
    """User+sys CPU of all our reaped children (and their reaped descendants)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_call(fn: Callable[[], Any], runs: int = 5, *, warmup: int = 0,
              before_each: Callable[[], Any] | None = None) -> Timing:
    """Timings of ``fn()``; ``before_each`` runs untimed (and un-CPU-counted) before each call."""
    timing = Timing()
    for i in range(warmup + runs):
        if before_each is not None:
            before_each()
        cpu0, start = children_cpu_seconds(), time.perf_counter()
        fn()
        elapsed, cpu = time.perf_counter() - start, children_cpu_seconds() - cpu0
        if i >= warmup:
            timing.samples.append(elapsed)
            timing.cpu_samples.append(cpu)
    return timing


def time_git(args: Sequence[str], runs: int = 5, *, cwd: str | os.PathLike[str] | None = None,
             config: Iterable[str] = (), env: Mapping[str, str] | None = None, warmup: int = 0,
             before_each: Callable[[], Any] | None = None) -> Timing:
    """Time a git command ``runs`` times.

    Every ``{tmp}`` in ``args`` becomes a fresh, not yet existing path in a new
    temp dir for each run (deleted afterwards, untimed), so clones never collide.
    """
    config = list(config)
    scratch: list[Path] = []

    def prepare() -> None:
        if before_each is not None:
            before_each()
        for old in scratch:
            shutil.rmtree(old, ignore_errors=True)
        scratch[:] = [Path(tempfile.mkdtemp(prefix="bench-run-"))]

    def run() -> None:
        git([a.replace("{tmp}", str(scratch[0] / "out")) for a in args], cwd=cwd, config=config, env=env)

    try:
        return time_call(run, runs, warmup=warmup, before_each=prepare)
    finally:
        for old in scratch:
            shutil.rmtree(old, ignore_errors=True)


def time_clone(url: str, runs: int = 3, *, args: Sequence[str] = ("--bare",), config: Iterable[str] = (),
               env: Mapping[str, str] | None = None, warmup: int = 0) -> Timing:
    """Median clone time of ``url`` into fresh directories (``--bare`` by default)."""
    return time_git(["clone", "-q", *args, url, "{tmp}"], runs, config=config, env=env, warmup=warmup)


def ls_remote_latency(url: str, calls: int = 50, *, config: Iterable[str] = (),
                      env: Mapping[str, str] | None = None, protocol: int | None = None) -> Latency:
    """End-to-end ``git ls-remote`` latency (process start included) over ``calls`` calls.

    ``protocol`` pins ``protocol.version`` (v2 costs two HTTP requests, v0 one).
    """
    config = list(config) + ([f"protocol.version={protocol}"] if protocol is not None else [])
    timing = time_call(lambda: git(["ls-remote", url], config=config, env=env), calls)
    return Latency(timing.samples, timing.cpu_samples)


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return kids


def process_tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and all their descendants still alive."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.add(pid)
        stack.extend(children(pid))
    return seen


def tree_cpu_seconds(roots: Iterable[int]) -> float:
    """CPU seconds used so far by the trees under ``roots``: each live process's
    user+sys plus that of its reaped children (cutime/cstime). Take the
    difference of two readings; short-lived CGI/git children are counted once
    their parent (in the tree) has reaped them."""
    ticks = 0
    for pid in process_tree(roots):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def rss_bytes(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS = VmHWM) of one process in bytes; (0, 0) if gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, hwm


@dataclass
class RSSReport:
    """Peak memory of a process tree while something ran.

    ``peak_bytes``: largest sampled sum of RSS over the whole tree (what the box
    needed). ``peak_single_bytes``: largest VmHWM of any one process seen alive
    (catches short spikes between samples). Processes that live for less than
    the sampling interval can be missed entirely.
    """

    peak_bytes: int = 0
    peak_single_bytes: int = 0
    max_processes: int = 0
    samples: int = 0

    def __str__(self) -> str:
        return (f"peak tree RSS {self.peak_bytes / 2**20:.1f} MiB, largest process "
                f"{self.peak_single_bytes / 2**20:.1f} MiB, up to {self.max_processes} processes")


class PeakRSS:
    """Context manager sampling the RSS of process trees in a background thread.

    Why a thread and /proc: servers spawn short-lived children (upload-pack,
    pack-objects) whose memory is the interesting part, and getrusage cannot see
    processes that are not our children.
    """

    def __init__(self, pids: int | Iterable[int], interval: float = 0.02) -> None:
        self.roots = [pids] if isinstance(pids, int) else list(pids)
        self.interval = interval
        self.report = RSSReport()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_bytes(self) -> int:
        return self.report.peak_bytes

    def sample(self) -> None:
        tree = process_tree(self.roots)
        total = 0
        for pid in tree:
            rss, hwm = rss_bytes(pid)
            total += rss
            self.report.peak_single_bytes = max(self.report.peak_single_bytes, hwm)
        r = self.report
        r.peak_bytes = max(r.peak_bytes, total)
        r.max_processes = max(r.max_processes, len(tree))
        r.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def peak_rss_during(pids: int | Iterable[int], fn: Callable[..., T], *args: Any, interval: float = 0.02,
                    **kwargs: Any) -> tuple[T, RSSReport]:
    """Run ``fn(*args, **kwargs)`` while sampling the trees under ``pids``."""
    with PeakRSS(pids, interval) as sampler:
        result = fn(*args, **kwargs)
    return result, sampler.report
