"""Who may send, and how a run knows another run is dead, even after `kill -9`.

SQLite (one machine): one `drip send` at a time per database, by an flock on a
file beside the database's *real* path (a symlink or a relative path names the
same lock). Every other run is dead, by construction.

PostgreSQL (one machine or many): any number of senders at once. Each holds a
session-level advisory lock named after its run id on a dedicated connection,
for as long as it runs: that is its pulse. The server releases it when the
connection drops, so a run whose lock can be taken is dead. Senders share the
due work through enrollment leases and conditional claims (sender.py,
claims.py); the run-level chores (the in-doubt sweep, re-planning after an
edit) are done by one sender at a time under a transaction-level lock. A
newsletter, which has no enrollments to lease, is shared by ranges of subscriber
ids (RangeLocks).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
import zlib
from pathlib import Path
from types import TracebackType

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .db import sqlite_path

ADVISORY_KEY = 0x64726970  # "drip": the first half of every advisory lock key
CHORES = 0  # the second half of the chores lock; run locks use a hash of the run id


class LockBusy(Exception):
    """Another drip send holds the lock (SQLite)."""


def run_key(run_id: str) -> int:
    """The second half of a run's advisory lock key (never 0, the chores key)."""
    return zlib.crc32(run_id.encode()) % 0x7FFFFFFF + 1


class SendLock:
    """`with SendLock(engine) as lock:` then send with `run_id=lock.run_id`."""

    def __init__(self, engine: Engine, wait: float = 0.0):
        self.engine, self.wait = engine, wait
        self.run_id = secrets.token_hex(8)
        self.shared = engine.dialect.name == "postgresql"  # several senders at once
        self._fd: int | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> SendLock:
        if self.shared:
            self._conn = self.engine.connect()
            self._conn.execute(
                text("SELECT pg_advisory_lock(:a, :b)"),
                {"a": ADVISORY_KEY, "b": run_key(self.run_id)},
            )
            self._conn.commit()
            return self
        deadline = time.monotonic() + self.wait
        while not self._try_file():
            if time.monotonic() >= deadline:
                raise LockBusy("another `drip send` is running against this database")
            time.sleep(0.2)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _try_file(self) -> bool:
        fd = os.open(lock_path(self.engine), os.O_RDWR | os.O_CREAT, 0o600)
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
    real = db.resolve()  # a symlink to the file, or another spelling, is the same lock
    return real.with_name(real.name + ".send-lock")


def take_chores(session: Session) -> bool:
    """May this run do the run-level chores now? Always on SQLite (one sender); on
    PostgreSQL when no other sender is doing them (held until the commit)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(
        session.execute(
            text("SELECT pg_try_advisory_xact_lock(:a, :b)"), {"a": ADVISORY_KEY, "b": CHORES}
        ).scalar()
    )


def dead_runs(session: Session, run_ids: set[str], own: str) -> set[str]:
    """Which of these runs are no longer alive (their pulse lock can be taken)."""
    run_ids = run_ids - {own}
    if session.get_bind().dialect.name != "postgresql":
        return run_ids  # SQLite: we hold the only send lock, every other run is dead
    dead = set()
    for run_id in run_ids:
        key = {"a": ADVISORY_KEY, "b": run_key(run_id)}
        # a transaction-level try: released at commit, never blocks a live run
        if session.execute(text("SELECT pg_try_advisory_xact_lock(:a, :b)"), key).scalar():
            dead.add(run_id)
    return dead


class RangeLocks:
    """PostgreSQL: which sender sends a newsletter to which range of subscriber ids.

    Senders that all walked the eligible list in id order built the same messages
    and raced for the same claims: the unique key kept each email once, but four
    workers sent a newsletter no faster than one, each building every message. A
    sender now takes a range before planning it and skips ranges another holds.
    Session-level advisory locks (one-key form, apart from the two-key run and
    chores locks) on a connection of their own: given back once the range's claims
    are committed, and by the server when a sender dies.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._conn: Connection | None = None

    @staticmethod
    def key(name: str, number: int) -> int:
        """A 64-bit key: a hash of the newsletter's key, then the range's number."""
        return ((zlib.crc32(name.encode()) & 0x7FFFFFFF) << 32) | (number & 0xFFFFFFFF)

    def take(self, name: str, number: int) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect()
        taken = self._conn.execute(
            text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key(name, number)}
        ).scalar()
        self._conn.commit()
        return bool(taken)

    def give_back(self, name: str, number: int) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key(name, number)})
            self._conn.commit()

    def close(self) -> None:
        if self._conn is not None:
            try:
                # the connection goes back to the pool, where the locks would stay
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.close()
            except SQLAlchemyError:  # the connection dropped: the server freed them
                self._conn.invalidate()
            self._conn = None
