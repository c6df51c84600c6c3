"""REST load for artifactd: repo creation and token minting rates, and list/get latency
with 100 and with 100,000 repos in one namespace.

The load generator is a minimal HTTP/1.1 client on asyncio (keep-alive connections,
``Content-Length`` bodies): it costs a few tens of microseconds per request, so on a
2-core machine most of the CPU stays with the server being measured. A general HTTP
client library costs several times that, and would be measured as the server's slowness.

    rate = load(base_url, token, requests, n=2000, concurrency=4)   # -> LoadResult
    create_rate(srv, n, concurrency)      # POST .../namespaces/{ns}/repos
    mint_rate(srv, n, concurrency)        # POST .../namespaces/{ns}/tokens
    scale_latency(srv, big=100_000)       # GET list / GET repo, 100 vs 100,000 repos

Rows for the 100,000-repo namespace are inserted in bulk with SQL through artifactd's
own models (a REST call per row would take minutes and measure creation, not reads);
every read is measured over REST.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.measure import percentile

Request = tuple[str, str, bytes]  # method, path, body


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    concurrency: int = 1

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = self.latencies or [0.0]
        return {
            "requests": self.requests, "concurrency": self.concurrency, "seconds": round(self.seconds, 3),
            "per_second": round(self.rate, 1), "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2), "mean_ms": round(statistics.fmean(lat) * 1000, 2),
            "max_ms": round(max(lat) * 1000, 2), "errors": len(self.errors), "first_errors": self.errors[:3],
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = None
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
        return status, bytes(body)
    return status, (await reader.readexactly(length) if length else b"")


async def _load(host: str, port: int, headers: bytes, make: Callable[[int], Request], n: int, concurrency: int,
                expect: int, result: LoadResult) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                method, path, body = make(i)
                req = (f"{method} {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n".encode() + headers
                       + b"\r\n" + body)
                t0 = time.perf_counter()
                writer.write(req)
                status, data = await _read_response(reader)
                result.latencies.append(time.perf_counter() - t0)
                if status != expect:
                    result.errors.append(f"{method} {path}: {status} {data[:200]!r}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def load(base_url: str, token: str, make: Callable[[int], Request], n: int, concurrency: int = 4,
         expect: int = 200) -> LoadResult:
    """Send ``make(0..n-1)`` over ``concurrency`` keep-alive connections; time each request."""
    u = urlsplit(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    headers = (f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
               "Content-Type: application/json\r\nAccept: application/json\r\n").encode()
    result = LoadResult(requests=n, seconds=0.0, concurrency=concurrency)
    t0 = time.perf_counter()
    asyncio.run(_load(host, port, headers, make, n, concurrency, expect, result))
    result.seconds = time.perf_counter() - t0
    return result


def _api_path(srv, tail: str) -> str:
    return f"/client/v4/accounts/{srv.account_id}/artifacts{tail}"


def create_rate(srv, n: int, concurrency: int = 4, namespace: str = "load", warmup: int = 50) -> dict[str, Any]:
    """Repo creations per second over REST (each: a bare repo on disk, rows, a write token)."""
    run = f"{random.randrange(16**6):06x}"

    def make(prefix: str) -> Callable[[int], Request]:
        path = _api_path(srv, f"/namespaces/{namespace}/repos")
        return lambda i: ("POST", path, json.dumps({"name": f"{prefix}-{run}-{i}"}).encode())

    load(srv.base_url, srv.api_token, make("warm"), warmup, concurrency, expect=201)
    return _with_cpu(srv, lambda: load(srv.base_url, srv.api_token, make("c"), n, concurrency, expect=201))


def mint_rate(srv, n: int, concurrency: int = 4, namespace: str = "load", warmup: int = 50) -> dict[str, Any]:
    """Repo token mints per second over REST (``POST .../tokens``) on one repo."""
    repo = f"mint-{random.randrange(16**6):06x}"
    srv.create_repo(namespace, repo)
    path = _api_path(srv, f"/namespaces/{namespace}/tokens")
    body = json.dumps({"repo": repo, "scope": "read", "ttl": 3600}).encode()
    make = lambda i: ("POST", path, body)  # noqa: E731
    load(srv.base_url, srv.api_token, make, warmup, concurrency, expect=201)
    return _with_cpu(srv, lambda: load(srv.base_url, srv.api_token, make, n, concurrency, expect=201))


def _with_cpu(srv, fn: Callable[[], LoadResult]) -> dict[str, Any]:
    """``fn()``'s summary plus the server's CPU per request (all its processes): on a
    shared machine this moves far less than the rate, and bounds the rate a core allows."""
    from bench.measure import tree_cpu_seconds

    cpu0 = tree_cpu_seconds([srv.proc.pid])
    res = fn()
    cpu = tree_cpu_seconds([srv.proc.pid]) - cpu0
    return {**res.summary(), "server_cpu_ms_per_request": round(cpu / res.requests * 1000, 2)}


# -- scale: 100 vs 100,000 repos in one namespace ---------------------------------------


def bulk_insert_repos(database_url: str, data_dir, account_id: str, namespace: str, count: int,
                      batch: int = 5000) -> float:
    """Insert ``count`` repo rows into ``namespace`` (created if missing) straight into the
    server's store through artifactd's models; returns seconds. The repos have no
    storage on disk: list and get read metadata only."""
    from sqlalchemy import insert

    from artifactd import ids
    from artifactd.config import Settings
    from artifactd.services.core import Core
    from artifactd.store.models import Repo

    core = Core(Settings(data_dir=data_dir, database_url=database_url))
    t0 = time.perf_counter()
    try:
        with core.db.session() as s:
            ns_id = core.namespaces.get_or_create(s, account_id, namespace).id
        base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                rid = ids.new_id()
                at = base + dt.timedelta(seconds=i)
                rows.append({"id": rid, "account_id": account_id, "namespace_id": ns_id, "name": f"repo-{i:06d}",
                             "name_key": f"repo-{i:06d}", "description": None, "default_branch": "main",
                             "read_only": False, "status": "ready", "storage_path": f"{rid[:2]}/{rid}.git",
                             "created_at": at, "updated_at": at})
            with core.db.session() as s:
                s.execute(insert(Repo), rows)
        if core.db.is_sqlite:
            with core.db.engine.connect() as c:
                c.exec_driver_sql("ANALYZE")
        else:
            with core.db.engine.connect() as c:
                c.exec_driver_sql("ANALYZE repos")
                c.commit()
    finally:
        core.close()
    return time.perf_counter() - t0


def _read_loads(srv, namespace: str, count: int, calls: int, seed: int = 7) -> dict[str, LoadResult]:
    """Sequential (one connection) get, first list page, and a list page deep in the
    namespace (by cursor), over REST."""
    from artifactd.services.namespaces import encode_cursor

    rng = random.Random(seed)
    names = [f"repo-{rng.randrange(count):06d}" for _ in range(calls)]
    get = load(srv.base_url, srv.api_token,
               lambda i: ("GET", _api_path(srv, f"/namespaces/{namespace}/repos/{names[i]}"), b""), calls, 1)
    first = load(srv.base_url, srv.api_token,
                 lambda i: ("GET", _api_path(srv, f"/namespaces/{namespace}/repos?limit=50"), b""), calls, 1)
    # a cursor pointing into the middle (what a client gets after paging half-way)
    with srv.api() as c:
        page = c.get(f"/namespaces/{namespace}/repos", params={"limit": 1, "sort": "name", "direction": "asc",
                                                                "search": f"repo-{count // 2:06d}"}).json()
    mid = page["result"][0]
    cursor = encode_cursor({"s": "created_at", "d": "desc", "i": mid["id"],
                            "v": dt.datetime.fromisoformat(mid["created_at"].replace("Z", "+00:00")).isoformat()})
    deep = load(srv.base_url, srv.api_token,
                lambda i: ("GET", _api_path(srv, f"/namespaces/{namespace}/repos?limit=50&cursor={cursor}"), b""),
                calls, 1)
    return {"get": get, "list_first_page": first, "list_mid_page": deep}


def read_latency(srv, namespace: str, count: int, calls: int) -> dict[str, Any]:
    return {"repos": count, **{op: r.summary() for op, r in _read_loads(srv, namespace, count, calls).items()}}


def scale_latency(srv, database_url: str, small: int = 100, big: int = 100_000, calls: int = 200,
                  log: Callable[[str], None] = print, rounds: int = 10) -> dict[str, Any]:
    """Reads in a namespace of ``small`` and one of ``big`` repos, taking turns round by
    round (as the Git servers do): a machine whose speed drifts during the run (this VM
    does) then weighs on both sizes alike."""
    sizes = (("scale-small", small), ("scale-big", big))
    for ns, count in sizes:
        secs = bulk_insert_repos(database_url, srv.data_dir, srv.account_id, ns, count)
        log(f"    inserted {count} repo rows in {secs:.1f} s")
    for ns, count in sizes:  # warm up the connection pool and caches the same way for both
        _read_loads(srv, ns, count, 20)
    merged: dict[int, dict[str, LoadResult]] = {}
    per_round = max(1, calls // rounds)
    for r in range(rounds):
        for ns, count in (sizes if r % 2 == 0 else sizes[::-1]):
            for op, res in _read_loads(srv, ns, count, per_round, seed=r).items():
                acc = merged.setdefault(count, {}).setdefault(op, LoadResult(requests=0, seconds=0.0))
                acc.requests += res.requests
                acc.seconds += res.seconds
                acc.latencies += res.latencies
                acc.errors += res.errors
    out: dict[str, Any] = {}
    for _, count in sizes:
        out[str(count)] = {"repos": count, **{op: res.summary() for op, res in merged[count].items()}}
        r = out[str(count)]
        log(f"    {count:>7} repos: get p50 {r['get']['p50_ms']} ms p99 {r['get']['p99_ms']} ms; list p50 "
            f"{r['list_first_page']['p50_ms']} ms; mid-page p50 {r['list_mid_page']['p50_ms']} ms")
    return out
