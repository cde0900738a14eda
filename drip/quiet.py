"""Cron's idle `drip send` without the database layer: the last run's "nothing before T".

Cron runs `drip send` every few minutes, and most runs find nothing to do. Loading
SQLAlchemy alone to ask costs about half a second of CPU each time. So a full run
on SQLite that ends with nothing left to do writes a small file beside the
database (`drip.db-quiet`): the earliest moment anything could fall due
(drip/next_work.py), the in-doubt count for the summary line, and what it was
computed from: the database file's state (size, mtime, inode of the file and its
WAL), a fingerprint of campaigns.toml, the templates, drip's version and the DRIP_*
settings. The next run trusts it only while all of that is unchanged and the
clock is before that moment; anything else (a signup, an unsubscribe, a queued
confirmation, an edit, `--now` earlier than the run that wrote it) takes the
full path. Any write to the database changes its file, so the file state is the
cheapest sure sign that something happened. The verdict lasts at most an hour
even when nothing is due for days: a safety net, not a schedule.

Only the standard library is imported here; cli.py calls `quiet_summary` before
anything else of the send path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from . import __version__
from .config import Config

QUIET_FOR_AT_MOST = timedelta(hours=1)
# File times are coarse (one kernel tick): a write within a tick of the previous one
# can leave the mtime unchanged. A state is recorded only once the files have been
# still for longer than that, so any later write shows.
SETTLE_S = 0.05
# settings whose values are secrets: not needed to tell whether the settings changed
_SECRET_WORDS = ("SECRET", "SIGNING")


def fingerprint(config: Config) -> str:
    """A hash of what a run reads besides the database: campaigns.toml, every
    template file, drip's version (the pre-flight check's verdict keys on it too)."""
    digest = hashlib.sha256(config.path.read_bytes())
    templates = config.templates_dir.parent  # emails/ and newsletters/
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(templates)).encode() + b"\0")
        digest.update(path.read_bytes())
    digest.update(__version__.encode())
    return digest.hexdigest()


def settings_print(env: dict[str, str] | None = None) -> str:
    """A hash of the DRIP_* settings (secrets left out): another relay, outbox or
    limit means the next run takes the full path."""
    env = dict(os.environ if env is None else env)
    digest = hashlib.sha256()
    for name in sorted(env):
        if name.startswith("DRIP_") and not any(w in name for w in _SECRET_WORDS):
            digest.update(f"{name}={env[name]}\0".encode())
    return digest.hexdigest()


def database_file(url: str) -> Path | None:
    """The real path of a plain `sqlite:///FILE` database; None for anything else
    (PostgreSQL, in memory, URI or query options): those always take the full path."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    name = unquote(url.removeprefix("sqlite:///"))
    if name in ("", ":memory:"):
        return None
    return Path(os.path.realpath(name))  # a symlink names the same database


def marker(db: Path) -> Path:
    return db.with_name(db.name + "-quiet")


def file_state(db: Path) -> list[list[int] | None]:
    """Size, mtime and inode of the database file and its WAL (None when absent)."""
    state: list[list[int] | None] = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
        except FileNotFoundError:
            state.append(None)
        else:
            state.append([st.st_size, st.st_mtime_ns, st.st_ino])
    return state


@dataclass(frozen=True)
class Verdict:
    since: str  # ISO time of the run that found nothing to do
    until: str  # ISO time before which nothing can fall due
    files: str  # fingerprint(config)
    settings: str  # settings_print()
    database: list[list[int] | None]  # file_state(db) after that run
    in_doubt: int  # deliveries in doubt, for the summary line


def quiet_summary(database_url: str, config: Config, now: datetime) -> int | None:
    """The in-doubt count when the last run's verdict still holds at `now` (nothing
    to do: the caller prints the idle summary and stops); None to run in full."""
    db = database_file(database_url)
    if db is None:
        return None
    try:
        data = json.loads(marker(db).read_text())
        verdict = Verdict(**data)
        since, until = datetime.fromisoformat(verdict.since), datetime.fromisoformat(verdict.until)
        if not since <= now < until:
            return None
        if verdict.database != file_state(db):
            return None
        if verdict.settings != settings_print() or verdict.files != fingerprint(config):
            return None
        return int(verdict.in_doubt)
    except (OSError, ValueError, TypeError, KeyError):  # absent, unreadable, another shape
        return None


def forget(database_url: str) -> None:
    """Drop the verdict (a full run is under way; it writes a new one if it can)."""
    db = database_file(database_url)
    if db is not None:
        with contextlib.suppress(FileNotFoundError):
            marker(db).unlink()


def remember(
    database_url: str,
    config: Config,
    since: datetime,
    until: datetime,
    in_doubt: int,
    state_before: list[list[int] | None],
) -> bool:
    """Write the verdict, if the database files are still as they were in
    `state_before` (taken before the next-work queries: nobody wrote meanwhile)."""
    db = database_file(database_url)
    if db is None or file_state(db) != state_before:
        return False
    until = min(until, since + QUIET_FOR_AT_MOST)
    verdict = Verdict(
        since.isoformat(),
        until.isoformat(),
        fingerprint(config),
        settings_print(),
        state_before,
        in_doubt,
    )
    path = marker(db)
    temporary = path.with_name(path.name + f".{os.getpid()}")
    temporary.write_text(json.dumps(asdict(verdict)))
    os.replace(temporary, path)  # a reader sees the old verdict or the new one, whole
    return True


def settled_state(database_url: str) -> list[list[int] | None] | None:
    """The database files' state, once they have been still for SETTLE_S (see there)."""
    db = database_file(database_url)
    if db is None:
        return None
    for _ in range(20):
        state = file_state(db)
        times = [s[1] for s in state if s is not None]
        # a file system that keeps whole seconds (some network and older ones):
        # only a write in a later second shows, so the files must be still that long
        settle = 1.0 + SETTLE_S if all(t % 1_000_000_000 == 0 for t in times) else SETTLE_S
        wait = max(times, default=0) / 1e9 + settle - time.time()
        if wait <= 0:
            return state
        time.sleep(wait)
    return None  # written to all along: no verdict this time
