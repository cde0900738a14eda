"""The send path's datetimes on SQLite (drip/rawsql.py) are stored exactly as the
ORM stores them (models.UTCDateTime through SQLAlchemy's own bind processor)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from drip.models import UTCDateTime
from drip.rawsql import _datetimes


@settings(max_examples=500, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.timezones() | st.just(UTC),
    )
)
def test_sqlite_text_is_what_the_orm_binds(moment):
    dialect = create_engine("sqlite://").dialect
    orm = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert orm is not None
    assert _datetimes(dialect)(moment) == orm(moment)


def test_none_and_naive_datetimes():
    when = _datetimes(create_engine("sqlite://").dialect)
    assert when(None) is None
    with pytest.raises(ValueError, match="naive"):
        when(datetime(2026, 6, 1, 15, 0))
