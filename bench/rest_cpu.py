"""Where a REST request's time goes: rate, p99 and the server's CPU per request (user and
system, from /proc) for a few routes, against a real ``artifactd serve``; and the cost of
spawning git from a process the size of the server, on each event loop.

    python -m bench.rest_cpu                        # healthz, get namespace, get repo, create
    python -m bench.rest_cpu --routes create --requests 5000 --concurrency 1
    python -m bench.rest_cpu --env ARTIFACTD_EVENT_LOOP=uvloop
    python -m bench.rest_cpu --spawn                # git spawn: asyncio vs uvloop

The docs/benchmarks.md tables "What each optimisation bought" were measured with these.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from artifactd.testing.server import ServerProcess  # noqa: E402
from bench.rest_load import _api_path, load  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def routes(srv: ServerProcess) -> dict:
    counter = iter(range(10**9))
    return {
        "healthz": (lambda i: ("GET", "/healthz", b""), 200),
        "get_namespace": (lambda i: ("GET", _api_path(srv, "/namespaces/load"), b""), 200),
        "get_repo": (lambda i: ("GET", _api_path(srv, "/namespaces/load/repos/fixed"), b""), 200),
        "create": (lambda i: ("POST", _api_path(srv, "/namespaces/load/repos"),
                              json.dumps({"name": f"c{next(counter)}"}).encode()), 201),
        "mint": (lambda i: ("POST", _api_path(srv, "/namespaces/load/tokens"),
                            json.dumps({"repo": "fixed", "scope": "read", "ttl": 3600}).encode()), 201),
    }


def measure(names: list[str], requests: int, concurrency: int, env: dict[str, str]) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-restcpu-") as tmp:
        srv = ServerProcess(data_dir=Path(tmp) / "data",
                            extra_env={"ARTIFACTD_RATE_LIMIT_CONTROL_PLANE": "0", **env}).start()
        try:
            srv.create_repo("load", "fixed")
            table = routes(srv)
            for name in names:
                make, expect = table[name]
                load(srv.base_url, srv.api_token, make, 200, concurrency, expect)  # warm up
                u0, s0 = _cpu(srv.proc.pid)
                r = load(srv.base_url, srv.api_token, make, requests, concurrency, expect)
                u1, s1 = _cpu(srv.proc.pid)
                summary = r.summary()
                row = {"route": name, "per_second": summary["per_second"], "p50_ms": summary["p50_ms"],
                       "p99_ms": summary["p99_ms"], "errors": summary["errors"],
                       "user_ms": round((u1 - u0) / TICK / requests * 1000, 2),
                       "sys_ms": round((s1 - s0) / TICK / requests * 1000, 2)}
                out.append(row)
                print(f"{name:<14} {row['per_second']:8.1f}/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
                      f"  server CPU {row['user_ms']} ms user + {row['sys_ms']} ms sys per request"
                      f"  ({row['errors']} errors)", flush=True)
        finally:
            srv.stop()
    return out


_SPAWN = """
import asyncio, sys, time
ballast = [bytearray(1 << 20) for _ in range(90)]  # a process the size of the server
for b in ballast:
    b[::4096] = b"\\1" * len(b[::4096])
async def main(n=100):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        p = await asyncio.create_subprocess_exec("git", "--version", stdout=asyncio.subprocess.PIPE,
                                                 start_new_session=True)
        await p.communicate()
        ts.append(time.perf_counter() - t)
    ts.sort()
    print(f"{sys.argv[1]:<8} spawn of git from a 90 MiB process: p50 {ts[len(ts) // 2] * 1000:.2f} ms")
if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def spawn_cost() -> None:
    for loop in ("asyncio", "uvloop"):
        subprocess.run([sys.executable, "-c", _SPAWN, loop], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rest_cpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", default="healthz,get_namespace,get_repo,create,mint")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    ap.add_argument("--spawn", action="store_true", help="only the git spawn cost per event loop")
    args = ap.parse_args(argv)
    if args.spawn:
        spawn_cost()
        return 0
    env = dict(e.split("=", 1) for e in args.env)
    measure([r for r in args.routes.split(",") if r], args.requests, args.concurrency, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
