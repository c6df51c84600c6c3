"""SQLite writers queue on a thread lock and an flock (artifactd/store/db.py): one writer
at a time across threads and processes, re-entrant, never SQLite's sleeping busy handler."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import text

from artifactd.store.db import Database

OTHER_PROCESS = """
import sys, time
from artifactd.store.db import Database
db = Database(sys.argv[1])
print("free" if db._lock.acquire_nowait() else "held", flush=True)
"""


def test_one_writer_across_threads_and_processes(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    db = Database(url)
    try:
        with db.session() as s:
            s.execute(text("CREATE TABLE t (n INTEGER)"))
        with db.session() as s:  # held by this thread (and, re-entrantly, again)
            with db.session() as inner:
                inner.execute(text("INSERT INTO t VALUES (1)"))
            probe = subprocess.run([sys.executable, "-c", OTHER_PROCESS, url], capture_output=True, text=True,
                                   check=True)
            assert probe.stdout.strip() == "held"
            with db.writer_if_free() as free:  # same thread: re-entrant
                assert free
            seen: list[bool] = []
            t = threading.Thread(target=lambda: seen.append(db._lock.acquire_nowait()))
            t.start()
            t.join()
            assert seen == [False]
        probe = subprocess.run([sys.executable, "-c", OTHER_PROCESS, url], capture_output=True, text=True,
                               check=True)
        assert probe.stdout.strip() == "free"
        # A writer in another process is waited for, not failed: it commits after ours.
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sys, time\nfrom sqlalchemy import text\nfrom artifactd.store.db import Database\n"
            "db = Database(sys.argv[1])\nwith db.session() as s:\n    print('in', flush=True)\n"
            "    s.execute(text('INSERT INTO t VALUES (2)'))\n    time.sleep(1.0)\n"), url],
            stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "in"
        with db.session() as s:  # queued behind the other process's transaction
            s.execute(text("INSERT INTO t VALUES (3)"))
        assert holder.wait(10) == 0
        with db.read() as s:
            assert [r[0] for r in s.execute(text("SELECT n FROM t ORDER BY rowid"))] == [1, 2, 3]
    finally:
        db.dispose()


def test_readers_do_not_wait_for_a_writer(tmp_path: Path):
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with db.session() as s:
            s.execute(text("CREATE TABLE t (n INTEGER)"))
            s.execute(text("INSERT INTO t VALUES (1)"))
        with db.session() as s:
            s.execute(text("INSERT INTO t VALUES (2)"))  # uncommitted, write lock held
            out: list[list[int]] = []

            def read() -> None:
                with db.read() as r:
                    out.append([row[0] for row in r.execute(text("SELECT n FROM t"))])

            t = threading.Thread(target=read)
            t.start()
            t.join(timeout=5)
            assert out == [[1]]  # the committed snapshot, at once
    finally:
        db.dispose()
