"""`drip subscribers import`: line numbers for bad rows, idempotent, never
resubscribes, set-based speed. Real SQLite files, the real `drip` command."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import Project
from web_fixtures import MON_10, Web, web_fixture  # noqa: F401

from drip.importer import fast_normalize
from drip.subscribers import InvalidSubscriber, normalize_email

MON = "2026-06-01T15:00:00Z"
HEADER = "email,first_name,timezone,symptoms,consent\n"


def write(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(project: Project, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(project.root / "drip.db") as conn:
        return conn.execute(sql).fetchall()


def test_bad_rows_are_reported_with_their_line_and_good_rows_imported(project: Project, tmp_path):
    path = write(
        tmp_path,
        HEADER
        + "ann@example.org,Ann,America/New_York,night_cramps;heavy_legs,paper form 2025\n"  # 2
        + "not-an-address,Bob,,night_cramps,paper form\n"  # 3
        + 'cy@example.org,"Cy\nwith a line break",,heavy_legs,\n'  # 4-5: no consent
        + "dee@example.org,Dee,Mars/Base,,form\n"  # 6
        + "eve@example.org,Eve,,night_cramps;no_such_key,form\n"  # 7
        + "ANN@example.org,Ann again,,,form\n"  # 8
        + "fay@example.org,Fay\n"  # 9
        + "\n"  # 10: blank lines are skipped
        + "gus@example.org,Gus,,,\n",  # 11: --consent fills in
    )
    result = project.run("subscribers", "import", str(path), "--consent", "clinic records")
    assert result.returncode == 1, result.stderr  # some rows were bad
    assert "Traceback" not in result.stderr
    problems = result.stderr.strip().splitlines()
    assert problems == [
        f"{path}:3: 'not-an-address' is not a valid email address",
        f"{path}:6: unknown time zone 'Mars/Base' (use a name like America/Chicago)",
        f"{path}:7: unknown symptom key(s): no_such_key",
        f"{path}:8: ann@example.org is already on line 2",
        f"{path}:9: has 2 fields; the header has 5",
    ]
    assert "8 rows: 3 imported" in result.stdout, result.stdout  # the blank line is no row
    stored = rows(
        project,
        "select email, first_name, timezone, status, consent_basis from subscribers order by id",
    )
    assert stored == [
        ("ann@example.org", "Ann", "America/New_York", "pending", "paper form 2025"),
        ("cy@example.org", "Cy with a line break", "America/Chicago", "pending", "clinic records"),
        ("gus@example.org", "Gus", "America/Chicago", "pending", "clinic records"),
    ]
    without = project.run(
        "subscribers", "import", str(write(tmp_path, HEADER + "h@example.org,,,,\n", "b.csv"))
    )
    assert without.returncode == 1 and ":2: no consent basis" in without.stderr


def test_reimporting_is_idempotent_and_never_resubscribes_anyone(project: Project, tmp_path, sink):
    for who in ("left", "bounced"):
        added = project.cli(
            "subscribers",
            "add",
            f"{who}@example.org",
            "--symptoms",
            "night_cramps",
            "--confirmed",
            "--now",
            MON,
        )
        assert added.exit_code == 0
    project.cli("subscribers", "unsubscribe", "left@example.org", "--now", MON)
    sink.handler.by_recipient["bounced@example.org"] = "reject"
    project.cli("send", "--now", MON)  # a hard bounce: suppressed
    project.cli("subscribers", "erase", "bounced@example.org", "--yes")  # only the hash stays
    path = write(
        tmp_path,
        HEADER
        + "left@example.org,Left,,heavy_legs,form\n"
        + "bounced@example.org,Bounced,,heavy_legs,form\n"
        + "new@example.org,New,,heavy_legs,form\n",
    )
    first = project.run("subscribers", "import", str(path), "--confirmed", "--now", MON)
    assert first.returncode == 0, first.stderr
    assert "3 rows: 1 imported, 1 already there (left unchanged), 1 suppressed" in first.stdout
    again = project.run("subscribers", "import", str(path), "--confirmed", "--now", MON)
    assert "3 rows: 0 imported, 2 already there (left unchanged), 1 suppressed" in again.stdout
    stored = rows(project, "select email, status from subscribers order by email")
    assert stored == [("left@example.org", "unsubscribed"), ("new@example.org", "active")]
    answers = rows(
        project,
        "select s.email, y.key from subscriber_symptoms y "
        "join subscribers s on s.id = y.subscriber_id",
    )
    assert ("left@example.org", "night_cramps") in answers  # not overwritten
    dry = project.run(
        "subscribers",
        "import",
        str(write(tmp_path, HEADER + "dry@example.org,,,,x\n", "d.csv")),
        "--dry-run",
    )
    assert "1 would import" in dry.stdout and not rows(
        project, "select 1 from subscribers where email = 'dry@example.org'"
    )


def test_confirmed_imports_are_planned_like_any_confirmed_subscriber(
    project: Project, tmp_path, sink
):
    added = project.cli(
        "subscribers",
        "add",
        "by-hand@example.org",
        "--symptoms",
        "night_cramps",
        "--timezone",
        "Europe/London",
        "--confirmed",
        "--now",
        MON,
    )
    assert added.exit_code == 0
    path = write(tmp_path, HEADER + "imported@example.org,Ima,Europe/London,night_cramps,form\n")
    assert (
        project.run("subscribers", "import", str(path), "--confirmed", "--now", MON).returncode == 0
    )
    plans = rows(
        project,
        "select s.email, e.campaign_key, e.state, e.next_step_key, e.next_due_at "
        "from enrollments e join subscribers s on s.id = e.subscriber_id order by s.email",
    )
    assert [p[1:] for p in plans if p[0] == "imported@example.org"] == [
        p[1:] for p in plans if p[0] == "by-hand@example.org"
    ]
    result = project.run("send", "--now", MON)
    assert result.returncode == 0 and "2 sent" in result.stdout, result.stdout
    welcome = sink.handler.to("imported@example.org")[0]
    assert "Ima" in welcome.data.decode()
    exported = json.loads(project.cli("subscribers", "export", "imported@example.org").output)
    assert exported["consent"]["consent_basis"] == "form"
    assert exported["audit"][0]["action"] == "subscriber.imported"


def test_pending_imports_get_a_confirmation_from_the_web_worker(web: Web, tmp_path):
    path = write(tmp_path, HEADER + "imp@example.org,Imp,,night_cramps,newsletter list 2024\n")
    now = MON_10.isoformat()
    assert web.project.run("subscribers", "import", str(path), "--now", now).returncode == 0
    # drip send cannot build it (no web pages to confirm on): it waits for the worker
    web.project.run("send", "--now", now)
    assert not web.sink.received
    # a week in the queue (a big import under the hourly cap) does not expire the signup
    later = (MON_10 + timedelta(days=8)).isoformat()
    purged = web.project.run("subscribers", "purge-pending", "--now", later)
    assert "purged 0 unconfirmed" in purged.stdout, purged.stdout
    web.services.worker.run_once()
    (mail,) = web.sink.received
    assert mail.subject == "Please confirm your email address"
    web.client.post(web.confirm_path("imp@example.org"))
    assert web.subscriber("imp@example.org").status == "active"


def test_whole_file_problems_are_one_line(project: Project, tmp_path):
    cases = {
        "email,name\nx@example.org,X\n": ":1: the columns must be",
        "": "is empty",
    }
    for text, expected in cases.items():
        result = project.run("subscribers", "import", str(write(tmp_path, text)))
        assert result.returncode == 1 and expected in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + "a@example.org,Ren\xe9e,,,x\n").encode("latin-1"))
    result = project.run("subscribers", "import", str(latin))
    assert result.returncode == 1 and f"{latin}:2: is not UTF-8" in result.stderr


def test_a_progress_bar_on_a_terminal(project: Project, tmp_path):
    path = write(tmp_path, HEADER + "".join(f"p{i}@example.org,,,,form\n" for i in range(3000)))
    code, shown = project.run_on_terminal("subscribers", "import", str(path))
    assert code == 0
    assert "importing" in shown and "100%" in shown and "3000 imported" in shown, shown
    piped = project.run("subscribers", "import", str(path))
    assert "importing" not in piped.stdout + piped.stderr


@pytest.mark.parametrize(
    "address",
    [
        "Pat@Example.ORG",
        " a.b+tag@sub.example.co.uk ",
        "x@example.test",
        "x@localhost",
        "ünï@example.org",
        "a..b@example.org",
        "a@-example.org",
        "a@xn--bcher-kva.example",
        "very.long." + "x" * 60 + "@example.org",
        "a@b",
        'quoted"@example.org',
    ],
)
def test_the_fast_address_check_agrees_with_the_full_one(address: str):
    try:
        expected: str | None = normalize_email(address)
    except InvalidSubscriber:
        expected = None
    try:
        got: str | None = fast_normalize(address)
    except InvalidSubscriber:
        got = None
    assert got == expected


def test_100000_rows_in_well_under_a_minute(project: Project, tmp_path):
    zones = ("America/Chicago", "America/New_York", "Europe/London", "")
    symptoms = ("night_cramps", "heavy_legs", "night_cramps;heavy_legs", "")
    path = tmp_path / "big.csv"
    with path.open("w") as out:
        out.write(HEADER)
        for i in range(100_000):
            out.write(f"patient{i}@example.org,Name{i},{zones[i % 4]},{symptoms[i % 4]},form\n")
    start = time.monotonic()
    result = project.run(
        "subscribers", "import", str(path), "--confirmed", "--now", MON, timeout=300
    )
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert "100000 rows: 100000 imported" in result.stdout
    print(f"imported 100,000 rows in {took:.1f} s")
    assert took < 60
    counts = rows(
        project, "select count(*) from subscribers union all select count(*) from enrollments"
    )
    assert counts == [(100_000,), (75_000,)]
