"""Database and file-system troubles as one plain line each, with an exit code.

Pure: an exception goes in, a sentence comes out. The CLI prints it and exits
with EXIT_DATABASE; the transaction that failed was rolled back by then, so what
was committed before it is intact (see README, "Exit codes").
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from .db import sqlite_file
from .settings import mask_url

EXIT_DATABASE = 3
AGAIN = "nothing half-done was kept; run the command again once that is fixed"

# (words in the driver's message, what to tell the operator); first match wins
_SQLITE: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("database is locked", "database table is locked"),
        "is locked: another program held it "
        "longer than the busy timeout ({timeout:g} s); set a longer one with ?timeout=SECONDS "
        "in DRIP_DATABASE_URL, or find what holds it",
    ),
    (
        ("readonly database", "read-only file system", "read only"),
        "cannot be written: the file or its folder is read-only",
    ),
    (("database or disk is full", "no space left"), "cannot grow: the disk is full"),
    (("disk i/o error",), "had a disk I/O error: check the disk and the file system"),
    (
        ("unable to open database file",),
        "cannot be opened: check that its folder exists and drip may write there",
    ),
    (("file is not a database", "malformed"), "is damaged or not a SQLite database"),
)
_POSTGRES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        (
            "terminating connection",
            "server closed the connection",
            "connection already closed",
            "consuming input failed",
            "server conn crashed",
            "ssl syscall error",
            "shutting down",
            "in recovery",
            "starting up",
            "connection is lost",
            "not currently accepting connections",
        ),
        "dropped the connection (the server restarted or stopped)",
    ),
    (
        ("password authentication failed", "no pg_hba.conf entry", "role"),
        "refused the login: check the user and password in DRIP_DATABASE_URL",
    ),
    (("does not exist",), "has no such database: create it first (see README, Deployment)"),
    (
        (
            "connection refused",
            "could not connect",
            "is the server running",
            "timeout expired",
            "could not translate host name",
            "name or service not known",
        ),
        "cannot be reached: is the server running, and is the host right?",
    ),
    (("no space left", "disk full", "could not extend file"), "is out of disk space"),
    (("read-only", "read only"), "is read-only (a standby?)"),
)


def describe(exc: BaseException, url: str) -> str:
    """One line for `exc`, raised while using the database at `url`."""
    if isinstance(exc, (ArgumentError, NoSuchModuleError)) or not _parses(url):
        return (
            f"DRIP_DATABASE_URL {mask_url(url)!r} is not a database drip can use; write "
            "sqlite:////full/path/drip.db or postgresql://user:password@host/database"
        )
    message = _message(exc).lower()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        where = f"the database file {path or parsed.database}"
        if path is not None and _read_only_folder(path):
            # SQLite says only "unable to open" when it cannot make its -wal/-shm files
            return f"{where} cannot be written: the file system is read-only; {AGAIN}"
        if path is not None and "i/o error" in message and _disk_full(path):
            message = "database or disk is full"  # SQLite's word for ENOSPC in the WAL index
        timeout = float(parsed.query.get("timeout", 60))  # type: ignore[arg-type]
        for words, text in _SQLITE:
            if any(w in message for w in words):
                return f"{where} {text.format(timeout=timeout)}; {AGAIN}"
    else:
        where = f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}"
        for words, text in _POSTGRES:
            if any(w in message for w in words):
                return f"{where} {text}; {AGAIN}"
    first = _message(exc).strip().splitlines()[0] if _message(exc).strip() else type(exc).__name__
    return f"database error on {where}: {first[:300]}; {AGAIN}"


def describe_os_error(exc: OSError) -> str:
    """A file-system error (a lock file, a folder) as one line."""
    where = exc.filename or "a file drip needs"
    if exc.errno == errno.EROFS:
        return f"{where}: the file system is read-only; {AGAIN}"
    if exc.errno == errno.ENOSPC:
        return f"{where}: the disk is full; {AGAIN}"
    return f"{where}: {exc.strerror or exc}; {AGAIN}"


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, SQLAlchemyError)


def _message(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    return str(exc)


def _parses(url: str) -> bool:
    try:
        make_url(url)
    except ArgumentError:
        return False
    return True


def _read_only_folder(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _disk_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path.parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 * 1024
