"""Engine, sessions and migrations.

SQLite is the embedded default (WAL mode and a busy timeout so a web process and a
`drip send` can share the file); PostgreSQL works from the same code and schema.
Migrations are Alembic scripts shipped inside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration. Kept here so everyday commands need not import Alembic
# (~0.2 s) to see that the schema is current; a test checks it matches.
HEAD_REVISION = "0008"


def make_engine(url: str) -> Engine:
    """An engine for `url`, tuned for drip's mix of short write transactions.

    SQLite waits up to 60 s for a lock (`?timeout=SECONDS` in the URL changes it).
    """
    if url.startswith("sqlite"):
        timeout = float(make_url(url).query.get("timeout", 60))  # type: ignore[arg-type]
        engine = create_engine(url, connect_args={"timeout": timeout})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable across crashes in WAL mode
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            cur.close()

        return engine
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url.removeprefix(prefix)
    if not url.startswith("postgresql"):
        raise ArgumentError(f"unsupported database URL {url!r}")
    return create_engine(url, pool_pre_ping=True)


def sqlite_path(engine: Engine) -> Path | None:
    """The database file, for SQLite engines that have one."""
    if engine.dialect.name != "sqlite":
        return None
    return sqlite_file(engine.url)


def sqlite_file(url: URL) -> Path | None:
    """The file a sqlite URL names, also in the `file:` URI form; None in memory."""
    database = url.database or ""
    if url.query.get("uri") == "true" and database.startswith("file:"):
        # sqlite:///file:/srv/drip.db?mode=rw&uri=true names the file /srv/drip.db
        database = unquote(database.removeprefix("file:").split("?", 1)[0])
        if database.startswith("//"):  # file:///srv/drip.db
            database = database[2:]
    if database in (":memory:", "") or url.query.get("mode") == "memory":
        return None
    return Path(database)


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def head_revision() -> str | None:
    """The newest migration script, read from the migrations folder."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def upgrade(engine: Engine) -> None:
    """Apply every migration not yet applied (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def ensure_schema(engine: Engine) -> None:
    """On first use of an empty database, create the schema; refuse an outdated one."""
    current = current_revision(engine)
    if current == HEAD_REVISION:
        return
    if current is None:
        upgrade(engine)
        return
    raise RuntimeError(
        f"the database schema is at revision {current} but this drip needs "
        f"{HEAD_REVISION}: run `drip db upgrade`"
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
