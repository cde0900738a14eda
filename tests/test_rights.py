"""Patients' data rights from the CLI: export, erase, unsubscribe, retention, audit.

Real SQLite files, the real SMTP sink, the real `drip` command (in a real
pseudo-terminal for the erase prompt).
"""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta

from conftest import Project
from web_fixtures import Web, web_fixture  # noqa: F401

from drip.subscribers import address_hash

MON = "2026-06-01T15:00:00Z"


def at(days: float) -> str:
    return (datetime.fromisoformat(MON) + timedelta(days=days)).isoformat()


def add(project: Project, email: str = "pat@example.org", *extra: str) -> None:
    result = project.cli(
        "subscribers",
        "add",
        email,
        "--symptoms",
        "night_cramps,heavy_legs",
        "--name",
        "Pat",
        "--confirmed",
        "--now",
        MON,
        *extra,
    )
    assert result.exit_code == 0, result.output


def audit_actions(project: Project) -> list[tuple[str, int | None, str]]:
    with sqlite3.connect(project.root / "drip.db") as conn:
        return conn.execute(
            "select action, subscriber_id, detail from audit_log order by id"
        ).fetchall()


def everything_stored(project: Project) -> str:
    """Every value in every table, as one string to search."""
    with sqlite3.connect(project.root / "drip.db") as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return "\n".join(repr(row) for t in tables for row in conn.execute(f'select * from "{t}"'))


def test_export_one_person_has_everything_and_is_audited(project: Project, sink):
    add(project)
    assert project.cli("send", "--now", MON).exit_code == 0
    result = project.cli("subscribers", "export", "Pat@Example.org")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["profile"]["email"] == "pat@example.org" and data["profile"]["first_name"] == "Pat"
    assert [a["key"] for a in data["answers"]] == ["heavy_legs", "night_cramps"]
    assert data["answers"][0]["label"] == "Heavy or tired legs"
    assert set(data["consent"]) >= {"consent_at", "consent_ip", "withdrawn_at", "consent_basis"}
    assert data["enrollments"][0]["campaign"] == "leg-health"
    assert [(d["step"], d["status"]) for d in data["deliveries"]] == [("welcome", "sent")]
    assert {"subscriber.created", "email.sent"} <= {a["action"] for a in data["audit"]}
    assert audit_actions(project)[-1][0] == "subscriber.exported"
    missing = project.cli("subscribers", "export", "nobody@example.org")
    assert missing.exit_code == 1 and "no subscriber" in missing.output


def test_every_command_that_reads_patients_data_is_audited(project: Project, sink):
    add(project)
    project.cli("send", "--now", MON)
    for args, action in (
        (("subscribers", "list"), "subscribers.listed"),
        (("subscribers", "show", "pat@example.org"), "subscriber.viewed"),
        (("subscribers", "export", "pat@example.org"), "subscriber.exported"),
        (("subscribers", "export", "--all"), "subscribers.exported_all"),
        (("deliveries",), "deliveries.listed"),
    ):
        before = len(audit_actions(project))
        assert project.cli(*args).exit_code == 0
        assert [a[0] for a in audit_actions(project)[before:]] == [action], args


def test_export_all_as_csv_and_jsonl(project: Project, tmp_path):
    add(project, "a@example.org")
    add(project, "b@example.org")
    out = tmp_path / "all.csv"
    assert project.cli("subscribers", "export", "--all", "-o", str(out)).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("email,first_name,timezone,symptoms,status,consent")
    assert lines[1].startswith("a@example.org,Pat,America/Chicago,heavy_legs;night_cramps,active")
    jsonl = project.cli("subscribers", "export", "--all", "--format", "jsonl").output
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["email"] for r in rows] == ["a@example.org", "b@example.org"]
    both = project.cli("subscribers", "export", "a@example.org", "--all")
    assert both.exit_code == 1 and "not both" in both.output


def test_unsubscribe_by_phone_stops_everything(project: Project, sink):
    add(project)
    result = project.cli("subscribers", "unsubscribe", "pat@example.org", "--now", at(1))
    assert result.exit_code == 0 and "unsubscribed" in result.output
    again = project.cli("subscribers", "unsubscribe", "pat@example.org")
    assert "already unsubscribed" in again.output
    assert project.cli("send", "--now", at(10)).exit_code == 0
    assert not sink.received
    actions = audit_actions(project)
    assert next(a for a in actions if a[0] == "subscriber.unsubscribed")[2] == '{"how": "request"}'


def erase_on_a_terminal(project: Project, email: str, answer: str) -> tuple[int, str]:
    """`drip subscribers erase` in a real pseudo-terminal, typing `answer`."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "drip", "subscribers", "erase", email],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=project.full_env(),
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    while b"[y/N]" not in output and time.monotonic() < deadline:
        output += os.read(leader, 1024)
    os.write(leader, answer.encode() + b"\n")
    while True:
        try:
            chunk = os.read(leader, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    code = proc.wait(timeout=60)
    os.close(leader)
    return code, output.decode(errors="replace")


def test_erase_asks_on_a_terminal_and_needs_yes_otherwise(project: Project):
    add(project)
    code, shown = erase_on_a_terminal(project, "pat@example.org", "n")
    assert code == 1 and "Aborted" in shown and "cannot be undone" in shown
    assert "pat@example.org" in project.cli("subscribers", "list").output
    piped = project.run("subscribers", "erase", "pat@example.org")
    assert piped.returncode == 1 and "add --yes" in piped.stderr
    code, shown = erase_on_a_terminal(project, "pat@example.org", "y")
    assert code == 0 and "erased pat@example.org" in shown, shown
    assert "pat@example.org" not in project.cli("subscribers", "list").output


def test_erase_leaves_no_personal_data_and_a_hash_only_if_they_opted_out(project: Project, sink):
    add(project, "stay@example.org")
    add(project)
    project.cli("send", "--now", MON)
    project.cli("subscribers", "unsubscribe", "pat@example.org", "--now", at(1))
    result = project.cli("subscribers", "erase", "pat@example.org", "--yes")
    assert result.exit_code == 0 and "suppression list as a hash" in result.output
    stored = everything_stored(project)
    assert "pat@example.org" not in stored and "'Pat'" in stored  # stay@ is also a Pat
    assert address_hash("pat@example.org") in stored  # the suppression entry, hashed
    tombstone = [a for a in audit_actions(project) if a[0] == "subscriber.erased"]
    assert len(tombstone) == 1 and tombstone[0][1] is None
    assert json.loads(tombstone[0][2])["suppressed"] is True
    # the one who never asked to stop leaves no hash behind and can come back as new
    assert project.cli("subscribers", "erase", "stay@example.org", "--yes").exit_code == 0
    assert address_hash("stay@example.org") not in everything_stored(project)
    add(project, "stay@example.org")
    assert "stay@example.org\tactive" in project.cli("subscribers", "list").output


def test_an_erased_person_who_had_opted_out_can_sign_up_again_as_new(web: Web):
    from drip.tokens import UNSUBSCRIBE

    web.signup("back@example.org", symptoms=("night_cramps",))
    web.client.post(web.confirm_path("back@example.org"))
    sub = web.subscriber("back@example.org")
    web.client.post(
        f"/u/{web.services.tokens.make(UNSUBSCRIBE, sub.public_id)}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert web.project.cli("subscribers", "erase", "back@example.org", "--yes").exit_code == 0
    before = len(web.sink.handler.to("back@example.org"))
    web.clock.advance(days=2)
    web.signup("back@example.org", symptoms=("heavy_legs",))
    new = web.subscriber("back@example.org")
    assert new is not None and new.status == "pending" and new.public_id != sub.public_id
    web.client.post(web.confirm_path("back@example.org"))
    assert web.subscriber("back@example.org").status == "active"
    subjects = [m.subject for m in web.sink.handler.to("back@example.org")[before:]]
    assert subjects == ["Please confirm your email address", "Welcome, here is what to expect"]


def test_answers_and_names_of_people_who_left_are_purged_after_the_retention(project: Project):
    project.edit_config("[symptoms]", '[privacy]\nkeep_after_unsubscribe = "10d"\n\n[symptoms]')
    add(project)
    add(project, "active@example.org")
    project.cli("subscribers", "unsubscribe", "pat@example.org", "--now", at(1))
    project.cli("send", "--now", at(10))
    assert "night_cramps" in project.cli("subscribers", "export", "pat@example.org").output
    result = project.run("send", "--now", at(11.5))
    assert result.returncode == 0 and "purged the answers and names of 1 people" in result.stdout
    data = json.loads(project.cli("subscribers", "export", "pat@example.org").output)
    assert data["answers"] == [] and data["profile"]["first_name"] is None
    assert data["profile"]["status"] == "unsubscribed" and data["consent"]["withdrawn_at"]
    kept = json.loads(project.cli("subscribers", "export", "active@example.org").output)
    assert kept["profile"]["first_name"] == "Pat" and len(kept["answers"]) == 2
    again = project.run("send", "--now", at(12))
    assert "purged" not in again.stdout  # once is enough


def test_a_purged_signup_s_record_never_shows_in_the_next_person_s(project: Project):
    # SQLite gives the newest row's id to the next row once it is deleted: the purged
    # person's audit entries must not become part of someone else's record
    def pending(email: str, days: float) -> int:
        result = project.cli("subscribers", "add", email, "--now", at(days))
        assert result.exit_code == 0, result.output
        with sqlite3.connect(project.root / "drip.db") as conn:
            (found,) = conn.execute("select id from subscribers where email = ?", (email,))
            return int(found[0])

    add(project, "active@example.org")
    never = pending("never@example.org", 0)  # never confirmed, the newest row
    purge = project.cli("send", "--now", at(8))
    assert "purged 1 unconfirmed signup" in purge.output
    assert pending("next@example.org", 8) == never  # the same id, given again
    data = json.loads(project.cli("subscribers", "export", "next@example.org").output)
    assert [a["action"] for a in data["audit"]] == ["subscriber.created"]
    entries = audit_actions(project)
    assert ("subscriber.purged", None) in [(a, who) for a, who, _ in entries]
    assert ("subscriber.created", None) in [(a, who) for a, who, _ in entries]  # kept, no id


def test_the_web_scheduler_purges_too(web: Web):
    from drip.web import jobs

    web.signup("gone@example.org", symptoms=("night_cramps",))
    web.client.post(web.confirm_path("gone@example.org"))
    web.project.cli("subscribers", "unsubscribe", "gone@example.org", "--now", MON)
    web.clock.advance(days=31)  # the default keep_after_unsubscribe is 30 days
    jobs.purge(web.services)
    gone = web.subscriber("gone@example.org")
    assert gone.symptom_keys == set() and gone.first_name is None


def test_a_confirmation_on_its_way_or_in_doubt_keeps_its_signup(project: Project):
    # the week counts from the latest confirmation: one being sent, or in doubt (it
    # may have arrived), holds the purge off, so its link still works when clicked
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from drip import db, mailqueue, rights, subscribers
    from drip.config import load_config
    from drip.message import Envelope
    from drip.models import QueuedMail, Subscriber

    config = load_config(project.config)
    engine = db.make_engine(project.database_url)
    db.ensure_schema(engine)
    start = datetime.fromisoformat(MON)
    late = start + timedelta(days=8)
    claimed = {  # when each one's confirmation was last taken up by a sender
        mailqueue.SENDING: late - timedelta(minutes=1),
        mailqueue.IN_DOUBT: late - timedelta(minutes=20),
        mailqueue.FAILED: start + timedelta(hours=1),
    }
    with Session(engine) as session:
        for status, at in claimed.items():
            sub = subscribers.create(
                session, config, email=f"{status}@example.org", symptoms=[], now=start
            )
            row = mailqueue.enqueue(
                session,
                kind="confirm",
                envelope=Envelope("care@clinic.test", sub.email, b"x"),
                now=start,
                subscriber_id=sub.id,
            )
            row.status, row.claimed_at = status, at
        session.commit()
        assert rights.purge_pending(session, late) == (1, 0)  # the one failed long ago
        session.commit()
        kept = set(session.scalars(select(Subscriber.email)))
        assert kept == {"sending@example.org", "in_doubt@example.org"}
        # a week after its claim the one in doubt goes too; one still being sent stays
        assert rights.purge_pending(session, late + timedelta(days=7)) == (1, 0)
        session.commit()
        assert set(session.scalars(select(Subscriber.email))) == {"sending@example.org"}
        remaining = session.scalar(select(func.count()).select_from(QueuedMail))
        assert remaining == 1  # the others' emails went with them
    engine.dispose()
