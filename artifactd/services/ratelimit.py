"""Rate limits (reference section 6): fixed windows counted where every server process
sees them.

Control-plane requests are counted per namespace (per account for routes without one),
Git requests per repo. A request over the limit is refused before any byte of a reply is
sent, with ``429`` and ``Retry-After`` (the seconds until the current window ends, when
the count starts again from zero).

Backends: ``memory`` (one process; the embedded default), ``redis`` and ``database``
(shared by every process using the same Redis or metadata store). If the shared backend
cannot be reached, requests are let through and the failure is logged: a broken counter
must not take the service down.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from artifactd.services.core import Core

log = logging.getLogger("artifactd.ratelimit")

CONTROL_PLANE = "cp"
GIT = "git"
BACKENDS = ("memory", "redis", "database")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    count: int
    retry_after: int  # seconds until the window ends (0 when allowed)


class Counter(Protocol):
    def incr(self, key: str, window: int, ttl: int) -> int: ...


class MemoryCounter:
    """Counters in this process only (single-process serving)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}
        self._window = 0

    def incr(self, key: str, window: int, ttl: int) -> int:
        with self._lock:
            if window != self._window:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
                self._window = window
            n = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = n
            return n


class RedisCounter:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def incr(self, key: str, window: int, ttl: int) -> int:
        k = f"artifactd:rl:{key}:{window}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(k)
        pipe.expire(k, ttl)
        n, _ = pipe.execute()
        return int(n)

    def close(self) -> None:
        self._redis.close()


class DatabaseCounter:
    """One row per (key, window) in the metadata store; an atomic upsert counts."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def incr(self, key: str, window: int, ttl: int) -> int:
        from artifactd.store.models_hardening import RateLimitCounter

        engine = self.core.db.engine
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        table = RateLimitCounter.__table__
        stmt = insert(table).values(key=key, window=window, count=1)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.key, table.c.window], set_={"count": table.c.count + 1}
        ).returning(table.c.count)
        with engine.begin() as conn:
            n = conn.execute(stmt).scalar_one()
            if random.random() < 0.005:  # sweep finished windows now and then
                conn.execute(table.delete().where(table.c.window < window - 1))
        return int(n)


class RateLimiter:
    def __init__(self, core: Core) -> None:
        s = core.settings
        self.window = max(1, int(s.rate_limit_window_seconds))
        self.limits = {CONTROL_PLANE: int(s.rate_limit_control_plane), GIT: int(s.rate_limit_git)}
        backend = s.rate_limit_backend.lower()
        if backend not in BACKENDS:
            raise ValueError(f"ARTIFACTD_RATE_LIMIT_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.backend = backend
        self._counter: Counter
        if backend == "redis":
            self._counter = RedisCounter(s.rate_limit_redis_url)
        elif backend == "database":
            self._counter = DatabaseCounter(core)
        else:
            self._counter = MemoryCounter()
        self._last_error_log = 0.0
        #: Whether :meth:`hit` may wait on the network or disk (memory counters never do).
        self.blocking = backend != "memory"

    def hit(self, kind: str, key: str, now: float | None = None) -> Decision:
        """Count one request against ``key`` and say whether it may proceed."""
        limit = self.limits[kind]
        if limit <= 0:
            return Decision(True, 0, 0, 0)
        now = time.time() if now is None else now
        window = int(now // self.window)
        try:
            count = self._counter.incr(f"{kind}:{key}", window, self.window * 2)
        except Exception as exc:  # noqa: BLE001 - fail open, loudly
            if time.monotonic() - self._last_error_log > 10:
                self._last_error_log = time.monotonic()
                log.error("rate-limit backend %s failed (%s); letting requests through", self.backend,
                          type(exc).__name__)
            return Decision(True, limit, 0, 0)
        if count <= limit:
            return Decision(True, limit, count, 0)
        retry_after = max(1, math.ceil((window + 1) * self.window - now))
        return Decision(False, limit, count, retry_after)

    @staticmethod
    def control_plane_key(account_id: str, namespace: str | None) -> str:
        return f"{account_id}:{namespace.lower()}" if namespace else account_id

    def close(self) -> None:
        close = getattr(self._counter, "close", None)
        if close:
            close()
