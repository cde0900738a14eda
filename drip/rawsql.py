"""Hot statements run straight on the database driver, inside the session's transaction.

`drip send` runs a handful of statements for every few messages. Profiled, the
work SQLAlchemy does around each execution (compiling the parameters, running
every value of every row through its type's processor, the result machinery)
cost more than the database itself: about 0.3 ms a message. The statements that
run per message are therefore plain SQL written once, in `:name` style, handed
to the driver's `executemany` on the session's own connection, so they commit or
roll back with everything else the session did. Datetimes are bound as the
column type (models.UTCDateTime) binds them, so what is stored is exactly what
the ORM stores and reads back: its own processor on PostgreSQL, the same text
made in one C call on SQLite (tests/test_rawsql.py checks they agree).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from .models import UTCDateTime

_NAME = re.compile(r"(?<![:\w]):(\w+)")


class Statement:
    """One SQL text with `:name` parameters, in each driver's own style on demand."""

    def __init__(self, sql: str):
        self.sql = sql
        self._styled: dict[str, str] = {}

    def styled(self, dialect: Dialect) -> str:
        sql = self._styled.get(dialect.name)
        if sql is None:
            if dialect.name == "sqlite":  # the sqlite3 module takes :name as it is
                sql = self.sql
            elif dialect.name == "postgresql":  # psycopg: %(name)s
                sql = _NAME.sub(r"%(\1)s", self.sql.replace("%", "%%"))
            else:  # pragma: no cover - drip runs on SQLite and PostgreSQL only
                raise NotImplementedError(f"no raw statements for {dialect.name}")
            self._styled[dialect.name] = sql
        return sql


class Raw:
    """The driver's cursor on a session's connection (and so in its transaction)."""

    def __init__(self, session: Session):
        connection = session.connection()
        self.dialect = connection.dialect
        self._cursor = connection.connection.cursor()
        self.when = _datetimes(self.dialect)

    def many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute `statement` once per row, in one driver call."""
        if rows:
            with self._errors(statement):
                self._cursor.executemany(statement.styled(self.dialect), rows)

    def one(self, statement: Statement, params: Mapping[str, Any]) -> None:
        with self._errors(statement):
            self._cursor.execute(statement.styled(self.dialect), params)

    def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        with self._errors(statement):
            self._cursor.execute(statement.styled(self.dialect), params)
            return list(self._cursor.fetchall())

    @contextmanager
    def _errors(self, statement: Statement) -> Iterator[None]:
        """The driver's errors as SQLAlchemy's, as the ORM raises them: the CLI turns
        those into one line and exit 3 (dberrors), never a traceback."""
        driver = self.dialect.loaded_dbapi
        try:
            yield
        except driver.Error as exc:
            raise DBAPIError.instance(
                statement.sql, None, exc, driver.Error, dialect=self.dialect
            ) from exc

    def close(self) -> None:
        self._cursor.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_list(prefix: str, count: int) -> tuple[str, list[str]]:
    """`(:r0, :r1, ...)` and the parameter names, for an IN over `count` values."""
    names = [f"{prefix}{i}" for i in range(count)]
    return "(" + ", ".join(":" + name for name in names) + ")", names


_PROCESSORS: dict[str, Callable[[datetime | None], Any]] = {}


def _datetimes(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """What UTCDateTime binds for a datetime on this dialect (SQLite: its text form)."""
    processor = _PROCESSORS.get(dialect.name)
    if processor is None:
        if dialect.name == "sqlite":
            processor = _sqlite_text
        else:
            found = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
            processor = found or (lambda value: value)
        _PROCESSORS[dialect.name] = processor
    return processor


def _sqlite_text(value: datetime | None) -> str | None:
    """UTCDateTime's text on SQLite ("2026-06-01 15:00:00.000000", UTC), as its
    bind processor makes it, in one C call instead of three Python frames: four
    values an email on the send path."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime; drip stores UTC-aware datetimes only")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # "2026-06-01 15:00:00.000000+00:00" less its offset (the year has four digits)
    return value.isoformat(" ", "microseconds")[:26]
