"""Cron's idle `drip send` trusts the last full run's "nothing before T" only while
nothing changed (drip/quiet.py), and T is never later than the next work
(drip/next_work.py).

The subprocess tests see which path a run took by what it imported: the quiet path
loads no SQLAlchemy. The walk at the end checks the verdict against the real full
run: at every moment just before the next-work time, a full run finds nothing to do.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from conftest import summary
from newsletter_helpers import add_newsletter
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session
from test_cron_path import MON_10, add_patient, probe

from drip import quiet
from drip.config import load_config
from drip.db import make_engine
from drip.models import Delivery, Subscriber
from drip.next_work import NEVER, next_work
from drip.schedule import IN_DOUBT

IDLE_LINE = "drip send: 0 sent, 0 skipped, 0 deferred, 0 failed"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def at(minutes: int) -> str:
    """MON_10 plus some minutes."""
    return iso(datetime.fromisoformat(MON_10) + timedelta(minutes=minutes))


def verdict(project) -> dict:
    return json.loads((project.root / "drip.db-quiet").read_text())


def welcomed(project, sink) -> None:
    """One patient, welcomed at MON_10: the next step is days away."""
    add_patient(project)
    first = project.run("send", "--now", MON_10)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["sent"] == 1
    assert len(sink.received) == 1


def test_a_run_after_an_idle_verdict_loads_no_database_layer(project, sink):
    welcomed(project, sink)
    written = verdict(project)
    assert written["since"].startswith("2026-06-01T15:00")
    assert written["until"].startswith("2026-06-01T16:00"), "at most an hour"
    result, output = probe(project, "send", "--now", at(10))
    assert result["code"] == 0, output
    assert result["loaded"] == [], f"the quiet path imported {result['loaded']}"
    assert IDLE_LINE in output
    assert len(sink.received) == 1


def test_a_write_to_the_database_takes_the_full_path(project, sink):
    welcomed(project, sink)
    add_patient(project, "second@example.org")  # a signup after the verdict
    result, output = probe(project, "send", "--now", at(5))
    assert "sqlalchemy" in result["loaded"], "a stale verdict was trusted"
    assert summary(output)["sent"] == 1
    assert len(sink.received) == 2
    again, output = probe(project, "send", "--now", at(6))
    assert again["loaded"] == [], "the run after the signup left a new verdict"


def test_an_edit_new_settings_or_another_clock_take_the_full_path(project, sink):
    welcomed(project, sink)
    full_env = project.full_env()
    relay = {**full_env, "DRIP_SMTP_URL": full_env["DRIP_SMTP_URL"] + "&connections=2"}
    for why, args, env in (
        ("other settings", ("--now", at(5)), relay),
        ("before the run that wrote it", ("--now", at(-5)), None),
        ("past its hour", ("--now", at(60)), None),
    ):
        (project.root / "drip.db-quiet").unlink(missing_ok=True)
        assert project.run("send", "--now", MON_10).returncode == 0  # a fresh verdict
        result, output = probe(project, "send", *args, env=env)
        assert result["code"] == 0, output
        assert "sqlalchemy" in result["loaded"], why
    project.edit_config('delay = "2d"', 'delay = "3d"')
    result, output = probe(project, "send", "--now", at(7))
    assert "sqlalchemy" in result["loaded"], "an edit of campaigns.toml"
    template = project.templates / "welcome.mjml"
    assert project.run("send", "--now", at(8)).returncode == 0
    template.write_text(template.read_text().replace("</mj-text>", " Hello.</mj-text>", 1))
    result, output = probe(project, "send", "--now", at(9))
    assert "sqlalchemy" in result["loaded"], "an edit of a template"
    assert len(sink.received) == 1


def test_the_quiet_line_keeps_the_in_doubt_count(project, sink):
    welcomed(project, sink)
    engine = make_engine(project.database_url)
    with Session(engine) as session:
        session.execute(update(Delivery).values(status=IN_DOUBT))
        session.commit()
    engine.dispose()
    full = project.run("send", "--now", at(1))
    quiet_run, output = probe(project, "send", "--now", at(2))
    assert quiet_run["loaded"] == [], quiet_run["loaded"]
    expected = "drip send: 0 sent, 0 skipped, 0 deferred, 0 failed; 1 in doubt (0 new)"
    assert expected in full.stdout
    assert expected in output


def test_a_write_between_the_snapshot_and_the_verdict_voids_it(project, sink):
    welcomed(project, sink)
    url = project.database_url
    (project.root / "drip.db-quiet").unlink()
    config = load_config(project.config)
    now = datetime.fromisoformat(MON_10)
    before = quiet.settled_state(url)
    assert before is not None
    add_patient(project, "late@example.org")
    later = now + timedelta(minutes=30)
    assert not quiet.remember(url, config, now, later, 0, before)
    assert not (project.root / "drip.db-quiet").exists()
    assert quiet.remember(url, config, now, later, 0, quiet.settled_state(url))


def test_only_a_plain_sqlite_file_has_a_quiet_path(tmp_path):
    assert quiet.database_file("postgresql://drip@db.example/drip") is None
    assert quiet.database_file("sqlite://") is None
    assert quiet.database_file("sqlite:///:memory:") is None
    assert quiet.database_file("sqlite:///file:x.db?mode=ro&uri=true") is None
    real = tmp_path / "drip.db"
    real.touch()
    (tmp_path / "link.db").symlink_to(real)
    assert quiet.database_file(f"sqlite:///{tmp_path / 'link.db'}") == real


# -- the verdict against the real run -----------------------------------------------


def full_send(project, moment: datetime) -> list[str]:
    """A full run at `moment` (no verdict to lean on); its output lines."""
    (project.root / "drip.db-quiet").unlink(missing_ok=True)
    result = project.cli("send", "--now", iso(moment))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


def test_no_run_finds_work_before_the_next_work_time(project, sink):
    """Walk a month from one next-work time to the next, with a series, a newsletter
    in two time zones, a pause, an unsubscribe and a signup never confirmed: just
    before each of those times, a full run finds nothing to do and writes nothing
    to the database."""
    add_newsletter(project, send_at="2026-06-09 10:00")
    start = datetime.fromisoformat(MON_10)
    for address, zone in (
        ("east@example.org", "America/New_York"),
        ("west@example.org", ""),
        ("leaves@example.org", ""),
    ):
        extra = ("--timezone", zone) if zone else ()
        added = project.cli(
            "subscribers", "add", address, "--symptoms", "night_cramps,heavy_legs",
            "--confirmed", "--name", "Pat", "--now", MON_10, *extra,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    # pending from a day later, never confirmed: purged a week after that
    later = "2026-06-02T17:00:00Z"
    pending = project.cli("subscribers", "add", "never@example.org", "--now", later)
    assert pending.exit_code == 0, pending.output
    engine = make_engine(project.database_url)
    with Session(engine) as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "west@example.org")
            .values(paused_until=start + timedelta(days=3, hours=5))
        )
        session.commit()
    config = load_config(project.config)
    moment, checked = start, 0
    for _ in range(60):
        full_send(project, moment)
        if moment == start:
            left = project.cli("subscribers", "unsubscribe", "leaves@example.org", "--now", MON_10)
            assert left.exit_code == 0, left.output
        with Session(engine) as session:
            upcoming = next_work(session, config, moment)
        engine.dispose()
        if upcoming is None:  # something waits for the window or min_gap: an hour on
            moment += timedelta(hours=1)
            continue
        if upcoming == NEVER:
            break
        for just_before in (upcoming - timedelta(seconds=1), moment + (upcoming - moment) / 2):
            state = quiet.file_state(quiet.database_file(project.database_url))
            lines = full_send(project, just_before)
            assert lines == [IDLE_LINE], f"work at {just_before}, before {upcoming}: {lines}"
            assert quiet.file_state(quiet.database_file(project.database_url)) == state
            checked += 1
        moment = upcoming
    else:
        raise AssertionError("the walk never came to rest")
    assert checked >= 8
    with Session(engine) as session:
        got = session.execute(
            select(Subscriber.email, Delivery.campaign_key).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        ).all()
        names = session.scalars(
            select(Subscriber.first_name).where(Subscriber.email == "leaves@example.org")
        ).all()
    engine.dispose()
    newsletter = {email for email, key in got if key == "newsletter:2026-06-news"}
    assert newsletter == {"east@example.org", "west@example.org"}
    assert names == [None], "the retention purge ran"
    with Session(engine) as session:
        never = session.scalar(select(Subscriber.id).where(Subscriber.email == "never@example.org"))
    engine.dispose()
    assert never is None, "the unconfirmed signup was purged"
    assert moment > start + timedelta(days=10)


def test_finding_the_next_work_reads_indexes_not_the_whole_list(project, sink):
    """Every statement next_work runs (no newsletter scheduled, cron's usual case)
    searches an index: none reads every subscriber, enrollment or delivery."""
    welcomed(project, sink)
    engine = make_engine(project.database_url)
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    with Session(engine) as session:
        next_work(session, load_config(project.config), datetime.fromisoformat(MON_10))
    event.remove(engine, "before_cursor_execute", capture)
    raw = engine.raw_connection()
    try:
        plans = {
            sql: " / ".join(
                row[-1] for row in raw.cursor().execute("EXPLAIN QUERY PLAN " + sql, params)
            )
            for sql, params in statements
            if sql.lstrip().upper().startswith("SELECT")
        }
    finally:
        raw.close()
    engine.dispose()
    assert len(plans) >= 6, plans
    for plan in plans.values():
        for table in ("subscribers", "enrollments", "deliveries", "mail_queue"):
            assert f"SCAN {table}" not in plan, plan
    # an index search can still read most of the list: the two that could, by name
    pauses = [plan for sql, plan in plans.items() if "min(subscribers.paused_until)" in sql]
    assert pauses and "ix_subscribers_paused_until" in pauses[0], pauses
    steps = [plan for sql, plan in plans.items() if "min(enrollments.next_due_at)" in sql]
    assert steps and "ix_enrollments_due" in steps[0], steps


def test_the_retention_purge_of_a_complainer_is_work_to_come(project, sink):
    # a spam report unsubscribes: their answers are purged on the same schedule, so
    # a quiet verdict must end when that purge is due
    added = project.cli(
        "subscribers", "add", "spam@example.org", "--symptoms", "night_cramps",
        "--confirmed", "--now", MON_10,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    left = datetime.fromisoformat(MON_10) + timedelta(days=1)
    engine = make_engine(project.database_url)
    with Session(engine) as session:
        session.execute(
            update(Subscriber).values(status="complained", unsubscribed_at=left, withdrawn_at=left)
        )
        session.commit()
        config = load_config(project.config)
        upcoming = next_work(session, config, left + timedelta(hours=1))
    engine.dispose()
    assert upcoming == left + config.privacy.keep_after_unsubscribe
