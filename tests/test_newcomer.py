"""Small things a newcomer trips on (issue 13), each tried as a new user would:
the real `drip` command, one clear line, counted nouns in the right number."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import Project
from mailsink import MailSink, free_port

BOTH = "both DRIP_SMTP_URL and DRIP_OUTBOX are set: unset one"


def test_send_refuses_smtp_and_outbox_together_with_one_line(
    project: Project, sink: MailSink, tmp_path: Path
):
    added = project.run("subscribers", "add", "pat@example.org", "--confirmed")
    assert added.returncode == 0, added.stderr
    outbox = tmp_path / "outbox"
    project.env["DRIP_OUTBOX"] = str(outbox)  # DRIP_SMTP_URL is set too
    result = project.run("send", "--now", "2026-06-01T15:00:00Z")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"drip: {BOTH}"), result.stderr
    assert sink.received == [] and not list(outbox.glob("*.eml"))  # nothing went either way


def test_serve_refuses_smtp_and_outbox_together_before_listening(project: Project, tmp_path: Path):
    project.env["DRIP_OUTBOX"] = str(tmp_path / "outbox")
    result = project.run("serve", "--port", str(free_port()), timeout=60)
    assert result.returncode == 1, result.stderr
    assert BOTH in result.stderr and "Traceback" not in result.stderr
    assert "serving" not in result.stdout


def test_serve_refuses_a_malformed_smtp_url_before_listening(project: Project):
    project.env["DRIP_SMTP_URL"] = "smtp://relay.example:587?connections=lots"
    result = project.run("serve", "--port", str(free_port()), timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == ["drip: connections= and timeout= must be numbers"]


def test_check_counts_one_newsletter_in_the_singular(shipped: Project):
    result = shipped.run("check")
    assert result.returncode == 0, result.stderr
    ok = next(ln for ln in result.stdout.splitlines() if ln.startswith("ok: "))
    assert re.search(r", 1 newsletter, ", ok), ok  # the shipped file has one


def test_an_import_of_one_row_says_row(project: Project, tmp_path: Path):
    path = tmp_path / "one.csv"
    path.write_text("email,first_name,timezone,symptoms,consent\nann@example.org,Ann,,,form\n")
    result = project.run("subscribers", "import", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 row: 1 imported" in result.stdout, result.stdout
