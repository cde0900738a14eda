"""SMTP settings against a real server: AUTH, STARTTLS, refusals, URL parsing."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import summary
from mailsink import MailSink

from drip.transport import SMTPSettings

MON = "2026-06-01T15:00:00Z"


def accept_alice(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"alice"
        and auth_data.password == b"s3cret/pass"
    )
    return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 itself


def add(project):
    result = project.cli(
        "subscribers",
        "add",
        "pat@example.org",
        "--symptoms",
        "night_cramps",
        "--confirmed",
        "--now",
        MON,
    )
    assert result.exit_code == 0, result.output


def test_auth_login_with_url_encoded_password(project):
    server = MailSink(authenticator=accept_alice, auth_require_tls=False).start()
    try:
        add(project)
        project.env["DRIP_SMTP_URL"] = (
            f"smtp://alice:s3cret%2Fpass@127.0.0.1:{server.port}?starttls=off"
        )
        assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
        assert len(server.received) == 1
    finally:
        server.stop()


def test_a_refused_login_stops_the_run_and_loses_nothing(project):
    server = MailSink(authenticator=accept_alice, auth_require_tls=False).start()
    try:
        add(project)
        base = f"127.0.0.1:{server.port}?starttls=off"
        project.env["DRIP_SMTP_URL"] = f"smtp://alice:wrong@{base}"
        result = project.cli("send", "--now", MON)
        assert result.exit_code == 2
        assert "SMTP login refused" in result.output and summary(result.output)["sent"] == 0
        assert server.received == []
        project.env["DRIP_SMTP_URL"] = f"smtp://alice:s3cret%2Fpass@{base}"
        assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
    finally:
        server.stop()


def test_starttls_required_encrypts_the_session(project, tls_context):
    server = MailSink(tls_context=tls_context, require_starttls=True).start()
    try:
        add(project)
        project.env["DRIP_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}?starttls=required&verify=no"
        assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
        assert server.handler.tls_sessions == 1
    finally:
        server.stop()


def test_smtps_speaks_tls_from_the_first_byte(project, tls_context):
    """smtps:// (port 465 style): a real aiosmtpd server that only talks TLS."""
    server = MailSink(ssl_context=tls_context).start()
    try:
        add(project)
        project.env["DRIP_SMTP_URL"] = f"smtps://127.0.0.1:{server.port}?verify=no&timeout=10"
        assert summary(project.cli("send", "--now", MON).output)["sent"] == 1
        assert server.handler.tls_sessions == 1
        (got,) = server.received
        assert got.recipient == "pat@example.org"
        # the same server refuses plain SMTP: the TLS above was not optional
        project.env["DRIP_SMTP_URL"] = f"smtp://127.0.0.1:{server.port}?starttls=off&timeout=2"
        project.cli("subscribers", "add", "ann@example.org", "--symptoms", "night_cramps",
                    "--confirmed", "--now", MON)  # fmt: skip
        plain = project.cli("send", "--now", MON)
        assert plain.exit_code == 2 and summary(plain.output)["sent"] == 0
        assert len(server.received) == 1
    finally:
        server.stop()


def test_smtps_checks_the_certificate_unless_told_not_to(project, tls_context):
    server = MailSink(ssl_context=tls_context).start()
    try:
        add(project)
        project.env["DRIP_SMTP_URL"] = f"smtps://127.0.0.1:{server.port}?timeout=5"
        result = project.cli("send", "--now", MON)  # self-signed: not trusted
        assert result.exit_code == 2 and summary(result.output)["sent"] == 0
        assert "certificate" in result.output.lower(), result.output
        assert server.received == []
    finally:
        server.stop()


def test_starttls_required_but_not_offered_is_refused(project, sink):
    add(project)
    project.env["DRIP_SMTP_URL"] = f"smtp://127.0.0.1:{sink.port}?starttls=required"
    result = project.cli("send", "--now", MON)
    assert result.exit_code == 2 and "does not offer STARTTLS" in result.output
    assert sink.received == []


def test_unreachable_server_stops_the_run_and_the_email_waits(project):
    from mailsink import free_port

    add(project)
    project.env["DRIP_SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}?starttls=off&timeout=2"
    result = project.cli("send", "--now", MON)
    assert result.exit_code == 2 and "cannot reach SMTP server" in result.output


@pytest.mark.parametrize(
    "url,expected",
    [
        ("smtp://relay.example", ("relay.example", 25, False, "auto", None)),
        (
            "smtp://u:p%40ss@relay.example:587?starttls=required",
            ("relay.example", 587, False, "required", "u"),
        ),
        ("smtps://relay.example", ("relay.example", 465, True, "off", None)),
    ],
)
def test_smtp_urls(url, expected):
    s = SMTPSettings.from_url(url)
    assert (s.host, s.port, s.implicit_tls, s.starttls, s.username) == expected


@pytest.mark.parametrize("url", ["http://relay", "smtp://", "smtp://h?starttls=maybe"])
def test_bad_smtp_urls(url):
    with pytest.raises(ValueError):
        SMTPSettings.from_url(url)
