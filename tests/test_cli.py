"""The CLI: every command works on a real database and is documented in README."""

from __future__ import annotations

import email.policy
import io
import json
import os
import re
import subprocess
import sys
from email import message_from_string
from pathlib import Path

import click
import pytest
from conftest import summary

from drip import db
from drip.cli import main
from drip.lazy import LazyCommand

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MON = "2026-06-01T15:00:00Z"


def commands(group: click.Group, prefix: str = "drip"):
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, LazyCommand):
            command = command.load()
        if isinstance(command, click.Group):
            yield from commands(command, path)
        else:
            yield path, command


@pytest.mark.parametrize("path,command", list(commands(main)), ids=lambda v: str(v))
def test_every_command_and_option_is_in_the_readme(path, command):
    rows = [line for line in README.splitlines() if line.startswith(f"| `{path}")]
    assert rows, f"README's CLI reference has no row for `{path}`"
    documented = " ".join(rows)
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert any(flag in documented for flag in param.opts + param.secondary_opts), (
                f"`{path}` option {param.opts} is not in README"
            )


def readme_rows() -> list[tuple[str, str]]:
    """(command path, whole row) for each row of the README's CLI tables."""
    known = sorted((path for path, _ in commands(main)), key=len, reverse=True)
    rows = []
    for line in README.splitlines():
        match = re.match(r"\| `(drip [^`]*)`", line)
        if match:
            path = next((p for p in known if f"{match.group(1)} ".startswith(f"{p} ")), None)
            assert path, f"README documents a command drip does not have: {match.group(1)!r}"
            rows.append((path, line))
    return rows


def test_every_documented_option_exists():
    """The other direction: an option removed or renamed in the code fails here."""
    by_path = dict(commands(main))
    rows = readme_rows()
    assert len({path for path, _ in rows}) == len(by_path)
    for path, row in rows:
        command = by_path[path]
        flags = {f for p in command.params for f in [*p.opts, *p.secondary_opts]} | {"--help"}
        # the command's own cell (pipes inside it are escaped): only its options are there
        usage = re.split(r"(?<!\\)\|", row)[1]
        for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", usage):
            assert flag in flags, f"README documents `{path} {flag}`, which does not exist"


def test_every_environment_variable_is_in_the_readme():
    source = "".join(p.read_text() for p in (ROOT / "drip").rglob("*.py"))
    names = set(re.findall(r'"(DRIP_[A-Z_]+)"', source))
    assert len(names) > 5  # found the sources, wherever pytest runs from
    for name in names:
        assert f"`{name}`" in README, f"{name} is not documented"


def test_the_version_constant_is_the_installed_version():
    """pyproject.toml reads drip.__version__; the quiet path hashes it (drip/quiet.py)."""
    from importlib.metadata import version

    import drip

    assert drip.__version__ == version("drip")
    shown = subprocess.run(
        [sys.executable, "-m", "drip", "--version"], capture_output=True, text=True, timeout=60
    )
    assert f"version {drip.__version__}" in shown.stdout


def test_the_schema_head_constant_matches_the_migrations():
    assert db.head_revision() == db.HEAD_REVISION


def test_the_migrated_schema_is_what_the_models_declare(any_project):
    """The database is made by the migrations alone: they must give every table,
    column and index models.py declares, and no index it does not, but the two
    partial ones a migration makes (declaring them would load the PostgreSQL dialect
    on every start, models.py says)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from drip.models import Base

    engine = db.make_engine(any_project.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    named = sorted((kind, index.name) for kind, index in found)
    assert named == [
        ("remove_index", "ix_enrollments_leased_by"),
        ("remove_index", "ix_subscribers_paused_until"),
    ], found


def add(project, address, symptoms="night_cramps", *extra):
    return project.cli("subscribers", "add", address, "--symptoms", symptoms, "--now", MON, *extra)


def test_subscribers_add_list_show(project):
    assert (
        "added pat@example.org (pending); campaigns: none" in add(project, "Pat@Example.ORG").output
    )
    assert (
        "(active); campaigns: leg-health"
        in add(
            project,
            "ann@example.org",
            "heavy_legs",
            "--confirmed",
            "--name",
            "Ann",
            "--timezone",
            "Europe/London",
        ).output
    )
    listed = project.cli("subscribers", "list").output.splitlines()
    assert listed == [
        "pat@example.org\tpending\tAmerica/Chicago\tnight_cramps",
        "ann@example.org\tactive\tEurope/London\theavy_legs",
    ]
    assert project.cli("subscribers", "list", "--status", "active").output.count("\n") == 1
    shown = project.cli("subscribers", "show", "ann@example.org").output
    assert "first_name             Ann" in shown
    assert "campaign leg-health: active" in shown and "next welcome" in shown


@pytest.mark.parametrize(
    "args,message",
    [
        (("not-an-email",), "not valid"),
        (
            ("a@example.org", "--symptoms", "nite_cramps"),
            "unknown symptom key: nite_cramps; did you mean 'nite_cramps' -> 'night_cramps'?",
        ),
        (("a@example.org", "--symptoms", "zz,qq"), "unknown symptom keys: qq, zz; known: "),
        (("a@example.org", "--timezone", "Mars/Base"), "unknown time zone"),
    ],
)
def test_subscribers_add_rejects_bad_input(project, args, message):
    result = project.cli("subscribers", "add", *args)
    assert result.exit_code == 1 and message in result.output


def test_adding_twice_is_an_error_not_a_duplicate(project):
    add(project, "pat@example.org")
    result = add(project, "PAT@example.org")
    assert result.exit_code == 1 and "already a subscriber" in result.output


def test_bad_now_is_a_usage_error(project):
    result = project.cli("send", "--now", "next tuesday")
    assert result.exit_code == 2 and "not an ISO-8601 time" in result.output


def test_stats_and_audit_count_what_happened(project, sink):
    add(project, "a@example.org", "night_cramps", "--confirmed")
    add(project, "b@example.org", "walking_cramps", "--confirmed")
    project.cli("send", "--now", MON)
    stats = json.loads(project.cli("stats", "--json").output)
    assert stats["subscribers"] == {"active": 2}
    assert stats["steps"]["leg-health/welcome"] == {"sent": 2}
    table = project.cli("stats").output
    assert re.search(r"leg-health/welcome\s+2\s+0\s+0\s+0", table)
    audit = project.cli("audit").output
    assert audit.count("email.sent") == 2 and audit.count("subscriber.created") == 2


def test_preview_formats(project):
    html = project.cli("preview", "leg-health", "causes", "--symptoms", "walking_cramps")
    assert html.exit_code == 0 and "<!doctype html>" in html.output
    assert "Please see a doctor about this soon." in html.output
    text = project.cli(
        "preview",
        "leg-health",
        "causes",
        "--format",
        "text",
        "--name",
        "",
        "--symptoms",
        "night_cramps",
    )
    assert text.output.startswith("Subject: Why muscles tighten at night\n")
    assert "Hello," in text.output and "see a doctor" not in text.output
    eml = project.cli("preview", "leg-health", "welcome", "--format", "eml").output
    msg = message_from_string(eml, policy=email.policy.default)
    assert msg["Subject"] == "Welcome, here is what to expect"
    missing = project.cli("preview", "leg-health", "nope")
    assert missing.exit_code == 1 and "known: leg-health/welcome" in missing.output


def test_the_drip_command_ends_with_its_code_and_all_its_output(project):
    """`python -m drip` (and the console script) skip the interpreter's teardown:
    every byte written still arrives through a pipe, and the exit code is the
    command's, as in-process."""
    args = ("preview", "leg-health", "causes", "--symptoms", "walking_cramps")
    inside, outside = project.cli(*args), project.run(*args)
    assert len(inside.output) > io.DEFAULT_BUFFER_SIZE  # more than one write's worth
    assert outside.returncode == 0
    # the same page (its signed links carry the second they were made)
    assert len(outside.stdout) == len(inside.output)
    assert outside.stdout.endswith("</html>") and inside.output.endswith("</html>")
    missing = project.run("preview", "leg-health", "nope")
    assert missing.returncode == 1 and "known: leg-health/welcome" in missing.stderr
    assert project.run("send", "--now", "yesterday").returncode == 2  # click's usage error
    # started with its output closed (cron with `>&-`): no stream to flush, still 0
    closed = subprocess.run(
        [sys.executable, "-m", "drip", "--help"],
        env=project.full_env(),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.close(1),
    )
    assert (closed.returncode, closed.stderr) == (0, "")


def test_db_upgrade_is_idempotent(project):
    for _ in range(2):
        result = project.cli("db", "upgrade")
        assert result.exit_code == 0 and f"revision {db.HEAD_REVISION}" in result.output


def test_a_database_one_migration_behind_upgrades_with_its_history(any_project):
    """The newest migration down and up again with `drip db upgrade`: the rows stay,
    and the run before it refuses to work on the old schema with the one line that
    says what to do."""
    from alembic import command
    from sqlalchemy import func, select

    from drip.models import Delivery

    add(any_project, "a@example.org", "night_cramps", "--confirmed")
    assert summary(any_project.run("send", "--now", MON).stdout)["sent"] == 1
    engine = db.make_engine(any_project.database_url)
    command.downgrade(db.alembic_config(engine), "-1")
    assert db.current_revision(engine) not in (None, db.HEAD_REVISION)
    refused = any_project.run("send", "--now", MON)
    assert refused.returncode != 0 and "run `drip db upgrade`" in refused.stderr
    upgraded = any_project.cli("db", "upgrade")
    assert upgraded.exit_code == 0 and f"revision {db.HEAD_REVISION}" in upgraded.output
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Delivery)) == 1
    engine.dispose()
    assert summary(any_project.run("send", "--now", MON).stdout)["sent"] == 0  # sent already


def test_upgrading_detaches_the_audit_entries_of_people_already_purged(any_project):
    """Migration 0008: entries left under the id of a subscriber who no longer exists
    (a signup purged by an earlier release) lose the id, so the next person given it
    never shows them; everybody else's entries keep theirs."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import select

    from drip.models import AuditEntry

    add(any_project, "a@example.org", "night_cramps", "--confirmed")
    engine = db.make_engine(any_project.database_url)
    command.downgrade(db.alembic_config(engine), "0007")
    with engine.begin() as conn:  # what an earlier purge left behind
        conn.execute(
            AuditEntry.__table__.insert().values(
                at=datetime(2026, 5, 1, tzinfo=UTC),
                actor="drip",
                action="subscriber.purged",
                subscriber_id=999,
                detail="{}",
            )
        )
    assert any_project.cli("db", "upgrade").exit_code == 0
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEntry.action, AuditEntry.subscriber_id)).all()
    engine.dispose()
    assert ("subscriber.purged", None) in rows
    assert [who for action, who in rows if action == "subscriber.created"] == [1]


def test_outbox_transport_writes_eml_files(project, tmp_path):
    del project.env["DRIP_SMTP_URL"]
    project.env["DRIP_OUTBOX"] = str(tmp_path / "outbox")
    add(project, "a@example.org", "night_cramps", "--confirmed")
    assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
    (eml,) = (tmp_path / "outbox").glob("*.eml")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in eml.read_bytes()
    # a later run numbers on after the files already there
    add(project, "b@example.org", "night_cramps", "--confirmed")
    assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
    assert sorted(p.name[:6] for p in (tmp_path / "outbox").glob("*.eml")) == ["000001", "000002"]


def test_preview_eml_is_the_message_drip_send_sends(project, sink):
    import email.policy
    import re
    from email import message_from_bytes

    add = ["subscribers", "add", "pat@example.org", "--symptoms", "night_cramps"]
    assert project.cli(*add, "--name", "Pat", "--confirmed", "--now", "2026-06-01T15:00:00Z")
    preview = project.cli(
        "preview", "leg-health", "welcome", "--subscriber", "pat@example.org", "--format", "eml"
    ).output.encode()
    assert project.cli("send", "--now", "2026-06-01T15:00:00Z").exit_code == 0
    (sent,) = sink.received

    def parts(data: bytes) -> list[tuple[str, str]]:
        """Headers and decoded parts, blanking what differs by design: the date, the
        random boundary, the per-message ref and the preferences link's timestamp."""
        message = message_from_bytes(data, policy=email.policy.default)
        found = [
            (name, re.sub(r"[0-9a-f]{32}", "REF", str(value)))
            for name, value in message.items()
            if name not in ("Date", "Content-Type")
        ]
        for part in message.walk():
            if not part.is_multipart():
                body = part.get_content().replace("\r\n", "\n")  # the terminal's line ends
                found.append((part.get_content_type(), re.sub(r"/p/[\w.-]+", "/p/TOKEN", body)))
        return found

    assert parts(preview) == parts(sent.data)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in preview
    assert b"List-Unsubscribe: <https://" in preview


def test_preview_says_when_a_patient_could_never_get_the_step(project):
    result = project.cli("preview", "leg-health", "walking", "--symptoms", "heavy_legs")
    assert result.exit_code == 0
    assert "never gets this step (any of walking_cramps)" in result.output


def test_status_filter_offers_the_real_statuses(project):
    result = project.cli("subscribers", "list", "--status", "bogus")
    assert result.exit_code == 2
    assert "'pending', 'active', 'unsubscribed', 'bounced', 'complained'" in result.output


def test_audit_names_the_address_or_nobody(project):
    add(project, "kept@example.org", "night_cramps", "--confirmed")
    add(project, "gone@example.org")  # pending: purged after a week unconfirmed
    later = "2026-06-15T15:00:00Z"
    assert project.cli("subscribers", "purge-pending", "--now", later).exit_code == 0
    lines = project.cli("audit").output.splitlines()
    created = [ln for ln in lines if "subscriber.created" in ln]
    assert len(created) == 2
    assert re.search(r"subscriber\.created\s+kept@example\.org\s", created[-1])
    # the purged signup's entries are kept about nobody (its id may be given again)
    assert re.search(r"subscriber\.created\s+-\s", created[0])
    assert any(re.search(r"subscriber\.purged\s+-\s", ln) for ln in lines)
    assert not any("gone@example.org" in ln for ln in lines)  # gone means gone
    assert not re.search(r"subscriber\.created\s+\d+\s", "\n".join(lines))


def test_counts_are_singular_when_there_is_one(project):
    text = project.config.read_text()
    project.config.write_text(text[: text.index('[[campaign]]\nkey = "urgent-care"')])
    result = project.cli("check", "-q")
    assert result.exit_code == 0, result.output
    assert "ok: campaigns.toml: 1 campaign, 4 steps," in result.output
