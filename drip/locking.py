"""One `drip send` at a time per database, released even when a run is killed.

SQLite: an flock on a file beside the database. PostgreSQL: a session-level
advisory lock held on a dedicated connection. The kernel (or the server, when the
connection drops) releases both when the process dies, so a `kill -9` never
leaves a stale lock behind, and everything left `claimed` by a run that no longer
holds the lock is known to be from a dead run (see sender.sweep_in_doubt).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from .db import sqlite_path

ADVISORY_KEY = 0x64726970  # "drip"


class LockBusy(Exception):
    """Another drip send holds the lock."""


class SendLock:
    def __init__(self, engine: Engine, wait: float = 0.0):
        self.engine, self.wait = engine, wait
        self._fd: int | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> SendLock:
        deadline = time.monotonic() + self.wait
        while not self._try():
            if time.monotonic() >= deadline:
                raise LockBusy("another `drip send` is running against this database")
            time.sleep(0.2)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _try(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            if self._conn is None:
                self._conn = self.engine.connect()
            got = self._conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}
            ).scalar()
            self._conn.commit()
            return bool(got)
        path = lock_path(self.engine)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.close()
            except SQLAlchemyError:
                # the connection dropped (server restart): the server freed the lock then
                self._conn.invalidate()
            self._conn = None


def lock_path(engine: Engine) -> Path:
    db = sqlite_path(engine)
    if db is None:
        raise RuntimeError("drip send needs a database file or PostgreSQL")
    return db.with_name(db.name + ".send-lock")
