"""Finding due work costs what is due: the query reads a range of one index, no table scan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from drip import db
from drip.claims import _RELEASE
from drip.feedback import sent_between
from drip.models import Enrollment
from drip.sender import due_query


def query_plans(project, statements: list[tuple[Any, dict]]) -> tuple[bool, list[str]]:
    """(on PostgreSQL?, the database's plan for each statement, as text)."""
    engine = db.make_engine(project.database_url)
    db.ensure_schema(engine)
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "

    def explain(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        return prefix + statement, parameters

    plans = []
    with Session(engine) as session:
        if postgres:  # an empty table is cheaper to scan: ask whether the index serves
            session.execute(text("SET enable_seqscan = off"))
        connection = session.connection()
        event.listen(engine, "before_cursor_execute", explain, retval=True)
        try:
            for statement, params in statements:
                rows = connection.execute(statement, params).all()
                plans.append("\n".join(str(row[0] if postgres else row[-1]) for row in rows))
        finally:
            event.remove(engine, "before_cursor_execute", explain)
        session.rollback()
    engine.dispose()
    return postgres, plans


def test_the_due_query_reads_a_range_of_the_due_index(any_project):
    postgres, (plan,) = query_plans(
        any_project, [(due_query(datetime(2026, 6, 1, tzinfo=UTC)), {})]
    )
    assert "ix_enrollments_due" in plan, plan
    if postgres:
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
    else:
        assert "COVERING INDEX ix_enrollments_due" in plan, plan
        assert "TEMP B-TREE" not in plan and "SCAN enrollments" not in plan, plan


def test_giving_back_and_sweeping_leases_reads_only_the_leased_rows(any_project):
    """Every run gives its leases back and the sweep looks for dead runs' leases:
    both by the partial index of the rows leased now, never a scan of every enrollment."""
    postgres, plans = query_plans(
        any_project,
        [
            (text(_RELEASE.sql), {"b_run": "0123456789abcdef"}),  # the very SQL drip runs
            (select(Enrollment.leased_by).where(Enrollment.leased_by.is_not(None)), {}),
        ],
    )
    for plan in plans:
        assert "ix_enrollments_leased_by" in plan, plan
        assert ("Seq Scan" if postgres else "SCAN enrollments") not in plan, plan


def test_a_soft_bounce_reads_the_patients_own_deliveries(any_project):
    """Whether anything went through between two soft bounces: by the index on
    subscriber_id. Without it (the unique key also starts with subscriber_id)
    SQLite, with no statistics, walked every sent delivery by the status index."""
    moment = datetime(2026, 6, 1, tzinfo=UTC)
    postgres, (plan,) = query_plans(any_project, [(sent_between(7, moment, moment), {})])
    if postgres:  # it has statistics: any index but a scan will do
        assert "Seq Scan" not in plan, plan
    else:
        assert "USING INDEX ix_deliveries_subscriber_id (subscriber_id=?)" in plan, plan
