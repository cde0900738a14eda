"""Broken input and database troubles: one clear line, a documented exit code, no
traceback, and nothing committed before the trouble is lost.

Real parts: the real `drip` command in subprocesses, real SQLite files (on a real
read-only or full tmpfs where this machine lets us mount one), a real PostgreSQL
server when DRIP_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import FIXTURES, Project, make_project

MON = "2026-06-01T15:00:00Z"
EXIT_CONFIG, EXIT_DATABASE = 1, 3


def one_clear_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "sqlalchemy" not in result.stderr.lower()
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# -- campaigns.toml ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('delay = "2d"', 'delay = "99999999999d"', ":46: campaign[0].step[1].delay: "),
        ('delay = "2d"', 'delay = "3000000d"', "longer than 10 years"),
        ("[symptoms]", "deep = " + "[" * 5000 + "]" * 5000 + "\n[symptoms]", ":20: "),
        ("[symptoms]", "deep = " + "{ a = " * 3000 + "1" + " }" * 3000 + "\n[symptoms]", ":20: "),
        ("Testville", "Test\udce9ville", ":6: is not UTF-8 text (byte 0xe9)"),
        ('min_gap = "12h"', 'min_gap = "12h"\nphone.extension = 3', ":14: clinic.phone: "),
    ],
    ids=["huge-delay", "delay-past-year-9999", "deep-array", "deep-table", "not-utf8", "dotted"],
)
def test_broken_campaigns_toml_gets_a_line_not_a_traceback(project: Project, old, new, expected):
    text = project.config.read_text().replace(old, new, 1)
    project.config.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = project.run("check", "-q")
    assert result.returncode == EXIT_CONFIG and "Traceback" not in result.stderr, result.stderr
    assert f"{project.config}" in result.stderr and expected in result.stderr, result.stderr


def test_campaigns_toml_as_a_folder_and_a_byte_order_mark(project: Project):
    text = project.config.read_text()
    project.config.write_text("\ufeff" + text)  # Windows editors add one
    assert project.run("check", "-q").returncode == 0
    project.config.unlink()
    project.config.mkdir()
    one_clear_line(project.run("check"), EXIT_CONFIG, "is a folder")
    one_clear_line(project.run("send"), EXIT_CONFIG, "is a folder")


# -- SQLite --------------------------------------------------------------------------


def test_a_sqlite_uri_url_works_and_a_read_only_one_says_so(project: Project):
    path = project.root / "uri.db"
    project.env["DRIP_DATABASE_URL"] = f"sqlite:///file:{path}?uri=true"
    added = project.run(
        "subscribers",
        "add",
        "pat@example.org",
        "--symptoms",
        "night_cramps",
        "--confirmed",
        "--now",
        MON,
    )
    assert added.returncode == 0, added.stderr
    sent = project.run("send", "--now", MON)
    assert sent.returncode == 0 and "1 sent" in sent.stdout, sent.stderr
    assert path.exists() and Path(f"{path}.send-lock").exists()
    project.env["DRIP_DATABASE_URL"] = f"sqlite:///file:{path}?mode=ro&uri=true"
    one_clear_line(
        project.run("subscribers", "add", "two@example.org", "--now", MON),
        EXIT_DATABASE,
        "read-only",
    )
    # reading patients' data writes an audit entry, so no listing without one
    one_clear_line(project.run("subscribers", "list"), EXIT_DATABASE, "read-only")
    stats = project.run("stats")
    assert stats.returncode == 0 and "1 active" in stats.stdout, stats.stderr


def test_a_lock_held_past_the_busy_timeout(project: Project):
    path = project.root / "drip.db"
    project.env["DRIP_DATABASE_URL"] = f"sqlite:///{path}?timeout=1"
    assert project.run("subscribers", "add", "one@example.org", "--now", MON).returncode == 0
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        result = project.run("subscribers", "add", "two@example.org", "--now", MON)
        one_clear_line(result, EXIT_DATABASE, str(path), "is locked", "1 s", "?timeout=")
        assert time.monotonic() - start < 30
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    listed = project.run("subscribers", "list").stdout
    assert "one@example.org" in listed and "two@example.org" not in listed
    assert project.run("subscribers", "add", "two@example.org", "--now", MON).returncode == 0


def test_unsupported_and_malformed_database_urls(project: Project):
    for url in ("mysql://db/drip", "not a url", "sqlite:////no/such/folder/drip.db"):
        project.env["DRIP_DATABASE_URL"] = url
        line = one_clear_line(project.run("subscribers", "list"), EXIT_DATABASE)
        assert "DRIP_DATABASE_URL" in line or "folder exists" in line, line


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A 2 MB file system of our own, or a skip where this machine forbids mounting."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_lock_taken_in_the_middle_of_a_send(project: Project, sink):  # type: ignore[no-untyped-def]
    """The claims and results go straight to the driver (rawsql.py): its "database is
    locked" is the same one line and exit 3, and the next run sends each email once."""
    from test_concurrency import NOW, seed

    seed(project, 30)
    path = project.root / "drip.db"
    project.env["DRIP_DATABASE_URL"] = f"sqlite:///{path}?timeout=1"
    sink.handler.delay = 0.05
    proc = project.popen("send", "--now", NOW)
    sink.handler.wait_for(5, timeout=60)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    one_clear_line(result, EXIT_DATABASE, str(path), "is locked", "1 s")
    sink.handler.delay = 0
    again = project.run("send", "--now", NOW)
    assert again.returncode == 0, again.stderr
    got = [m.recipient for m in sink.received]
    assert len(got) == len(set(got)), "an email was sent twice"


def on(mount: Path, sink_url: str) -> Project:
    project = make_project(mount, FIXTURES / "basic", sink_url)
    assert project.run("subscribers", "add", "kept@example.org", "--now", MON).returncode == 0
    return project


def test_a_read_only_file_system(tmpfs: Path, sink):  # type: ignore[no-untyped-def]
    project = on(tmpfs, sink.url)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    for args in (("subscribers", "add", "new@example.org", "--now", MON), ("send", "--now", MON)):
        one_clear_line(project.run(*args), EXIT_DATABASE, "read-only")
    subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert "kept@example.org" in project.run("subscribers", "list").stdout


def test_a_full_disk(tmpfs: Path, sink):  # type: ignore[no-untyped-def]
    project = on(tmpfs, sink.url)
    filler = tmpfs / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
    failed = None
    for i in range(20):  # the first writes may fit in pages SQLite already holds
        result = project.run("subscribers", "add", f"new{i}@example.org", "--now", MON)
        if result.returncode != 0:
            failed = i
            one_clear_line(result, EXIT_DATABASE, "disk is full")
            break
    assert failed is not None
    filler.unlink()
    listed = project.run("subscribers", "list").stdout
    assert "kept@example.org" in listed and f"new{failed}@example.org" not in listed
    assert all(f"new{i}@example.org" in listed for i in range(failed))


# -- PostgreSQL ----------------------------------------------------------------------


def wait_for_smtp(sink, connections: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while sink.handler.connections < connections and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the SMTP transaction now


def terminate(url: str, name: str, refuse: bool = False) -> None:
    """What a server restart does to drip's connections (and, with `refuse`, a
    server that does not come back)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as admin:
        if refuse:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


def test_postgresql_that_cannot_be_reached(project: Project):
    project.env["DRIP_DATABASE_URL"] = "postgresql://drip:secret-pw@127.0.0.1:9/drip"
    line = one_clear_line(project.run("send"), EXIT_DATABASE, "127.0.0.1:9", "cannot be reached")
    assert "secret-pw" not in line


def test_postgresql_restarting_in_the_middle_of_a_send(tmp_path: Path, sink):  # type: ignore[no-untyped-def]
    url = os.environ.get("DRIP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set DRIP_TEST_POSTGRES_URL to run against PostgreSQL")
    import psycopg

    name = f"drip_restart_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    project = make_project(tmp_path, FIXTURES / "basic", sink.url)
    project.env["DRIP_DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    try:
        for who in ("a", "b"):
            added = project.run(
                "subscribers",
                "add",
                f"{who}@example.org",
                "--symptoms",
                "night_cramps",
                "--confirmed",
                "--now",
                MON,
            )
            assert added.returncode == 0, added.stderr
        # a restart while an email is in flight: drip reconnects and carries on
        sink.handler.delay = 2
        proc = project.popen("send", "--now", MON)
        wait_for_smtp(sink, 1)
        terminate(url, name)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "2 sent" in out, (out, err)
        assert sorted(m.recipient for m in sink.received) == ["a@example.org", "b@example.org"]

        # the server goes away while an email is in flight and stays away
        added = project.run(
            "subscribers",
            "add",
            "c@example.org",
            "--symptoms",
            "night_cramps",
            "--confirmed",
            "--now",
            MON,
        )
        assert added.returncode == 0, added.stderr
        opened = sink.handler.connections  # phase one may have used several
        proc = project.popen("send", "--now", MON)
        wait_for_smtp(sink, opened + 1)
        terminate(url, name, refuse=True)
        out, err = proc.communicate(timeout=60)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        one_clear_line(result, EXIT_DATABASE, "dropped the connection")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        sink.handler.delay = 0
        after = project.run("send", "--now", MON)
        assert after.returncode == 0, after.stderr
        # nothing lost: the email in flight is reported in doubt, never resent silently
        assert "1 in doubt" in after.stdout, after.stdout
        assert [m.recipient for m in sink.received].count("c@example.org") <= 1
    finally:
        from drip.db import make_engine

        make_engine(project.database_url).dispose()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
