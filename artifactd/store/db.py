"""Engine, sessions and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: What a service statement runs on: an ORM session, or a Core connection on hot paths.
Executor = Session | Connection
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: WAL pages after which a commit checkpoints itself (SQLite's default is 1000).
WAL_BACKSTOP_PAGES = 20_000
#: The WAL file is cut back to this after a checkpoint, bytes.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
#: Bytes of the database file read through mmap, and KiB of page cache per connection.
MMAP_BYTES = 256 * 1024 * 1024
CACHE_KIB = 16 * 1024
log = logging.getLogger("artifactd.store")


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
            # Checkpoints normally run inside the commit that fills the WAL past 1000
            # pages: an fsync of the database file in the middle of a request, the p99 of
            # repo creation (27 ms against 14 ms without). A server moves the WAL in the
            # background (Database.start_checkpointer); this is the backstop.
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
            cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            # SQLite's default page cache is 2 MiB a connection: a namespace of 100,000
            # repos (~30 MiB of rows and indexes) then reads pages through syscalls.
            # Map the file instead, and keep more pages.
            cur.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
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
        self._take(blocking=True)

    def acquire_nowait(self) -> bool:
        """Take the lock only if no thread or process holds it (then release with __exit__)."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        return self._take(blocking=False)

    def _take(self, *, blocking: bool) -> bool:
        """With the thread lock held: the flock too (outermost level only)."""
        if self._depth == 0 and self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._thread_lock.release()
                return False
            except BaseException:
                self._thread_lock.release()
                raise
        self._depth += 1
        return True

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
        self._checkpointer: tuple[threading.Thread, threading.Event] | None = None

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
    def transaction(self) -> Iterator[Connection]:
        """:meth:`session` without the ORM: a Core connection in one transaction, for hot
        paths of plain statements (repo creation, token minting): the ORM's layers around
        each statement were ~0.35 ms of a creation's 1.5 ms of CPU (docs/benchmarks.md)."""
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def writer_if_free(self) -> Iterator[bool]:
        """Hold the writers' queue for a block if nobody holds it now (yields True), else
        yield False at once. SQLite only; lets the HTTP layer run a short write on the
        event loop when it would not wait (see ``artifactd.http.deps.write_call``)."""
        if not isinstance(self._lock, _WriterQueue) or not self._lock.acquire_nowait():
            yield False
            return
        try:
            yield True
        finally:
            self._lock.__exit__()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads only (what it changes is never written). Its objects stay
        readable after it ends."""
        with self._read_sessions() as s:
            yield s

    @contextlib.contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """:meth:`read` without the ORM, for statements that return plain rows
        (authentication of every REST request)."""
        with self.read_engine.connect() as conn:
            yield conn

    def start_checkpointer(self, interval: float = 0.25) -> None:
        """SQLite: move WAL pages into the database file every ``interval`` seconds from
        a background thread (a PASSIVE checkpoint waits for no one and nobody waits for
        it; sqlite releases the GIL while it copies and syncs)."""
        if not self.is_sqlite or self._checkpointer is not None:
            return
        stop = threading.Event()

        def run() -> None:
            conn = None
            while not stop.wait(interval):
                try:
                    if conn is None:
                        conn = self.read_engine.raw_connection()
                    conn.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception:  # noqa: BLE001 - the commit-path backstop still holds
                    log.debug("background checkpoint failed", exc_info=True)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

        thread = threading.Thread(target=run, name="sqlite-checkpoint", daemon=True)
        self._checkpointer = (thread, stop)
        thread.start()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            thread, stop = self._checkpointer
            stop.set()
            thread.join(timeout=5)
            self._checkpointer = None
        if isinstance(self._lock, _WriterQueue):
            self._lock.close()
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
