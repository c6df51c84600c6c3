"""Engine, sessions and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """``readonly`` (SQLite): sessions that begin a deferred transaction, for reads only."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=40,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # pysqlite starts a transaction only at the first write, so the reads before it
            # (a uniqueness or emptiness check) are not part of it. Take the write lock at
            # the start instead: every session is then one serializable transaction.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            # A reader's deferred transaction is one WAL snapshot and never waits for a writer.
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision of every migration branch."""
    command.upgrade(alembic_config(engine), "heads")


def _lock_file_for(url: str) -> str | None:
    """``<database file>.writer-lock`` for a SQLite file URL; None for an in-memory one."""
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    if not path or path == ":memory:":
        return None
    return path + ".writer-lock"


class _WriterQueue:
    """A re-entrant lock held by one thread of one process at a time (thread lock +
    ``flock``). The kernel hands the flock to the next waiting process at once."""

    def __init__(self, path: str | None) -> None:
        self._thread_lock = threading.RLock()
        self._path = path
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._depth == 0 and self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Database:
    """Owns the engine and hands out short-lived sessions."""

    def __init__(self, url: str):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time and every session takes the write lock: queue
        # writers here rather than in SQLite's busy handler, which sleeps and polls (up
        # to 100 ms a nap: p99 latency of 65 ms with two server processes). A thread
        # lock queues this process's sessions, an flock on a file beside the database
        # queues the processes sharing it (``--workers``, CLI commands).
        self._lock = _WriterQueue(_lock_file_for(self.url)) if self.is_sqlite else contextlib.nullcontext()
        # Reads (authentication above all) stay out of that queue: on SQLite they get an
        # engine of their own whose transactions are WAL snapshots.
        self.read_engine = make_engine(self.url, readonly=True) if self.is_sqlite else self.engine
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def inline_reads(self) -> bool:
        """Whether :meth:`read` sessions are quick enough to run on the event loop (a
        local SQLite file in WAL mode: readers never wait for writers)."""
        return self.is_sqlite

    def migrate(self) -> None:
        migrate(self.engine)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        with self._lock, self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only (what it changes is never written). Its objects stay
        readable after it ends."""
        with self._read_sessions() as s:
            yield s

    def dispose(self) -> None:
        if isinstance(self._lock, _WriterQueue):
            self._lock.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
