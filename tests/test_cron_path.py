"""Cron's `drip send` with nothing due stays small: no web framework is ever imported,
and nothing that only checking or building an email needs (issue 10).

Each probe runs the real command in a fresh interpreter and reports which of the
watched modules it imported. No timing here: bench/bench_idle.py measures.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import summary

HEAVY = ("flask", "werkzeug", "aiosmtpd", "waitress", "apscheduler", "cryptography")
# what only rendering, checking, composing or sending an email needs
RENDERING = (
    "jinja2",
    "mjml",
    "inscriptis",
    "email_validator",
    "email.mime",
    "multiprocessing",
    "drip.render",
    "drip.outgoing",
    "drip.checks",
    "drip.postman",
)
# another engine's code: an SQLite run needs none of it (a dialect option in the
# models once imported SQLAlchemy's PostgreSQL dialect, asyncpg's included, on every run)
OTHER_ENGINE = ("sqlalchemy.dialects.postgresql", "psycopg")
# drip's version is a constant: reading the installed metadata cost about 30 ms a run
SLOW_TO_LOAD = ("importlib.metadata",)
WATCHED = (*HEAVY, *RENDERING, *OTHER_ENGINE, *SLOW_TO_LOAD, "sqlalchemy")
MON_10 = "2026-06-01T15:00:00Z"  # in the fixture's send window

# runs the real command in a fresh interpreter, then reports what it imported
# (only what drip loaded: a coverage run, say, starts with multiprocessing loaded)
PROBE = f"""
import json, sys
before = set(sys.modules)
from drip.cli import main
code = 0
try:
    main(sys.argv[1:], prog_name="drip")
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in {WATCHED!r} if m in sys.modules and m not in before)
print("PROBE " + json.dumps({{"code": code, "loaded": loaded}}))
"""


def probe(project, *args: str, env: dict[str, str] | None = None) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=env or project.full_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE ")), done.stdout + done.stderr


def add_patient(project, address: str = "pat@example.org") -> None:
    added = project.cli(
        "subscribers", "add", address, "--symptoms", "night_cramps", "--confirmed",
        "--now", MON_10,
    )  # fmt: skip
    assert added.exit_code == 0, added.output


def test_send_with_nothing_due_imports_no_web_framework_and_no_renderer(project, sink):
    add_patient(project)
    # a first run migrates the database, runs the pre-flight check and sends the welcome
    first = project.run("send", "--now", MON_10)
    assert first.returncode == 0, first.stderr
    assert summary(first.stdout)["sent"] == 1
    result, output = probe(project, "send", "--now", MON_10)  # the next step is days away
    assert result["code"] == 0, output
    assert summary(output)["sent"] == 0
    assert len(sink.received) == 1
    # the first run left its verdict: nothing due before a moment still ahead
    # (drip/quiet.py), so this run needs no database layer at all
    assert result["loaded"] == [], f"the idle cron path imported {result['loaded']}"


def test_a_send_with_work_does_load_the_renderer(project, sink):
    """The probe sees what a run imports: the same command with an email due."""
    add_patient(project)
    result, output = probe(project, "send", "--now", MON_10)
    assert result["code"] == 0, output
    assert summary(output)["sent"] == 1
    assert {"drip.render", "jinja2", "mjml", "drip.outgoing"} <= set(result["loaded"])
    assert not set(HEAVY) & set(result["loaded"])


def test_an_edit_runs_the_check_once_then_the_idle_path_is_small_again(project):
    first = project.run("send", "--now", MON_10)
    assert first.returncode == 0, first.stderr
    welcome = project.templates / "welcome.mjml"
    welcome.write_text(welcome.read_text().replace("</mj-text>", " See you soon.</mj-text>", 1))
    checked, output = probe(project, "send", "--now", MON_10)
    assert checked["code"] == 0, output
    assert {"drip.checks", "drip.render"} <= set(checked["loaded"]), "the edit was not checked"
    again, output = probe(project, "send", "--now", MON_10)
    assert again["code"] == 0, output
    assert again["loaded"] == [], again["loaded"]


def test_help_imports_no_web_framework_and_no_database_layer(project):
    result, output = probe(project, "--help")
    assert result["loaded"] == [], f"`drip --help` imported {result['loaded']}"
    for name in ("serve", "run", "snippet", "demo", "report", "bounces", "dkim", "send"):
        assert f"  {name} " in output, name


def test_a_missing_secret_key_is_one_line_before_the_database_is_touched(project):
    env = {k: v for k, v in project.full_env().items() if k != "DRIP_SECRET_KEY"}
    result, output = probe(project, "send", "--now", MON_10, env=env)
    assert result["code"] == 1, output
    assert "DRIP_SECRET_KEY is not set" in output and "Traceback" not in output
    assert result["loaded"] == [], result["loaded"]
    assert not (project.root / "drip.db").exists()


def test_web_commands_still_work_when_invoked(project):
    snippet = project.run("snippet", "--url", "https://clinic.example/drip")
    assert snippet.returncode == 0, snippet.stderr
    assert "<form" in snippet.stdout
    assert "https://clinic.example/drip" in snippet.stdout
    purge = project.run("subscribers", "purge-pending", "--days", "3")
    assert purge.returncode == 0, purge.stderr
    assert "purged 0 unconfirmed signups;" in purge.stdout
    serve_help = project.run("serve", "--help")
    assert "--threads" in serve_help.stdout
