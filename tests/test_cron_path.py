"""Cron's `drip send` with nothing due stays small: no web framework is ever imported."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import summary

HEAVY = ("flask", "werkzeug", "aiosmtpd", "waitress", "apscheduler", "cryptography")

# runs the real command in a fresh interpreter, then reports what it imported
PROBE = f"""
import json, sys
from drip.cli import main
try:
    main(sys.argv[1:], prog_name="drip")
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))
print("PROBE " + json.dumps({{"code": code, "heavy": heavy}}))
"""


def probe(project, *args: str) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env=project.full_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PROBE "))
    return json.loads(line.removeprefix("PROBE ")), done.stdout + done.stderr


def test_send_with_nothing_due_imports_no_web_framework(project):
    # a first run migrates the database and runs the pre-flight check once
    first = project.run("send", "--now", "2026-06-01T15:00:00Z")
    assert first.returncode == 0, first.stderr
    result, output = probe(project, "send", "--now", "2026-06-01T15:00:00Z")
    assert result["code"] in (0, None), output
    assert summary(output)["sent"] == 0
    assert result["heavy"] == [], f"the cron path imported {result['heavy']}"


def test_help_imports_no_web_framework_and_lists_the_web_commands(project):
    result, output = probe(project, "--help")
    assert result["heavy"] == [], f"`drip --help` imported {result['heavy']}"
    for name in ("serve", "run", "snippet", "demo", "report", "bounces", "dkim"):
        assert f"  {name} " in output, name


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
