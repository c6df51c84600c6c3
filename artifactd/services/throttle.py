"""Slow down repeated failed logins and token checks.

Counters live in the database (``auth_throttle``) so every server process sees them.
Below the threshold nothing changes; past it, each further failure doubles a back-off
(``auth_backoff_base`` .. ``auth_backoff_max`` seconds). While it runs:

- password logins from that client (or for that user) get 429 with ``Retry-After``,
  even with the right password;
- failed token checks from that client get 429 with ``Retry-After`` instead of 401;
  valid tokens keep working, so one misconfigured script behind a shared address does
  not lock everyone out.

Clients in ``ARTIFACTD_THROTTLE_EXEMPT`` (default: loopback) are never slowed down.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from artifactd.errors import ArtifactsError, ErrorCode
from artifactd.store.models_identity import AuthThrottle
from artifactd.store.types import utcnow

if TYPE_CHECKING:
    from artifactd.services.core import Core


class Throttled(ArtifactsError):
    def __init__(self, retry_after: int):
        super().__init__(ErrorCode.RATE_LIMITED,
                         f"Too many failed attempts from this client; retry in {retry_after} s.")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class Throttle:
    def __init__(self, core: Core):
        self.core = core
        self._blocked: dict[str, dt.datetime] = {}
        self._lock = threading.Lock()

    def exempt(self, ip: str | None) -> bool:
        import ipaddress

        if not ip:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self._exempt_networks())

    def _exempt_networks(self) -> list:
        import ipaddress

        raw = self.core.settings.throttle_exempt
        return [ipaddress.ip_network(c.strip(), strict=False) for c in raw.split(",") if c.strip()]

    def _threshold(self, kind: str) -> int:
        s = self.core.settings
        return s.login_failure_threshold if kind.startswith("login") else s.token_failure_threshold

    @staticmethod
    def _key(kind: str, who: str | None) -> str:
        return f"{kind}:{who or 'unknown'}"[:400]

    def _raise_if_blocked(self, until: dt.datetime | None, now: dt.datetime) -> None:
        if until is not None and until > now:
            raise Throttled(max(1, math.ceil((until - now).total_seconds())))

    def check_cached(self, kind: str, who: str | None, ip: str | None = None) -> None:
        """Cheap check: blocks this process already knows about (no database read)."""
        if self.exempt(ip if ip is not None else who):
            return
        key = self._key(kind, who)
        with self._lock:
            until = self._blocked.get(key)
        if until is not None:
            now = utcnow()
            if until <= now:
                with self._lock:
                    self._blocked.pop(key, None)
            else:
                self._raise_if_blocked(until, now)

    def check(self, kind: str, who: str | None, ip: str | None = None) -> None:
        """Authoritative check (a database read): used before verifying a password."""
        if self.exempt(ip if ip is not None else who):
            return
        self.check_cached(kind, who, ip)
        key = self._key(kind, who)
        with self.core.db.session() as s:
            row = s.get(AuthThrottle, key)
            until = row.blocked_until if row else None
        if until is not None and until > utcnow():
            with self._lock:
                self._blocked[key] = until
        self._raise_if_blocked(until, utcnow())

    def fail(self, kind: str, who: str | None, ip: str | None = None) -> None:
        """Count a failure; raise 429 if the client is now (or still) being slowed down."""
        if self.exempt(ip if ip is not None else who):
            return
        key = self._key(kind, who)
        settings = self.core.settings
        window = dt.timedelta(seconds=settings.auth_failure_window)
        for _ in range(3):
            now = utcnow()
            try:
                with self.core.db.session() as s:
                    row = s.get(AuthThrottle, key, with_for_update=True)
                    if row is None:
                        row = AuthThrottle(key=key, failures=0, window_start=now)
                        s.add(row)
                    elif now - row.window_start > window and (row.blocked_until is None or row.blocked_until <= now):
                        row.failures, row.window_start, row.blocked_until = 0, now, None
                    row.failures += 1
                    over = row.failures - self._threshold(kind)
                    if over >= 0:
                        delay = min(settings.auth_backoff_max, settings.auth_backoff_base * (2 ** min(over, 30)))
                        row.blocked_until = now + dt.timedelta(seconds=delay)
                    until = row.blocked_until
                break
            except IntegrityError:  # two processes created the row at once: retry
                continue
        else:  # pragma: no cover
            return
        if until is not None and until > now:
            with self._lock:
                self._blocked[key] = until
            self._raise_if_blocked(until, now)

    def succeed(self, kind: str, who: str | None) -> None:
        key = self._key(kind, who)
        with self._lock:
            self._blocked.pop(key, None)
        with self.core.db.session() as s:
            row = s.get(AuthThrottle, key)
            if row is not None:
                s.delete(row)
