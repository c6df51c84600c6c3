"""Tables of the hardening work: shared rate-limit counters and server-process leases."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from artifactd.store.models import Base
from artifactd.store.types import UTCDateTime, utcnow


class RateLimitCounter(Base):
    """Requests counted in one fixed window (backend ``database``)."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    #: Window number: unix time // window seconds.
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ServerLease(Base):
    """One running server process. Start-up recovery asks whether any other process is
    alive before it clears leftovers (lock files, quarantines, orphaned repo dirs) that a
    live process could still be using."""

    __tablename__ = "server_leases"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: The data volume (repo directory) the process serves, from ``<data>/volume-id``.
    volume: Mapped[str] = mapped_column(String(32), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
