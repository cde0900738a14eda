"""DKIM: keys from `drip dkim keygen`, signatures checked by dkimpy's own verifier.

The public key comes from the TXT record keygen prints, served to the verifier
by an injected DNS function (no network).
"""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime

import dkim as dkimpy
import hypothesis
import pytest
from deliver_helpers import send_to
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from drip.dkim import ED25519, RSA, DkimKey, DkimSigner, aligned, generate_ed25519, generate_rsa
from drip.mailqueue import deliver_queued
from drip.message import Envelope, build_message, compose, return_path
from drip.render import RenderedEmail
from drip.settings import Settings
from drip.subscribers import find
from drip.transport import SMTPTransport
from drip.web.app import build_services
from drip.web.mailer import CONFIRM_STEP
from drip.web.mailer import queue as queue_transactional

RECORD = re.compile(r"^(\S+)\. IN TXT \( (.+) \)$", re.M)


def keygen(project, tmp_path, selector, *extra):  # type: ignore[no-untyped-def]
    out = tmp_path / f"{selector}.key"
    result = project.cli("dkim", "keygen", "--selector", selector, "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    name, quoted = RECORD.search(result.output).groups()
    value = "".join(re.findall(r'"([^"]*)"', quoted))
    return out, name, value


class Dns:
    """TXT records for dkimpy's dnsfunc."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}

    def add(self, name: str, value: str) -> None:
        self.records[f"{name}.".encode()] = value.encode()

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        return self.records.get(name)


def verify_all(data: bytes, dns: Dns) -> list[bool]:
    checker = dkimpy.DKIM(data)
    count = sum(1 for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")
                if line.lower().startswith(b"dkim-signature:"))  # fmt: skip
    return [_verify(checker, i, dns) for i in range(count)]


def _verify(checker: dkimpy.DKIM, idx: int, dns: Dns) -> bool:
    try:
        return checker.verify(idx=idx, dnsfunc=dns)
    except dkimpy.DKIMException:  # e.g. a body hash mismatch; dkimpy.verify does the same
        return False


def dkim_env(project, tmp_path, dns, ed25519=True):  # type: ignore[no-untyped-def]
    rsa, name, value = keygen(project, tmp_path, "drip1")
    assert name == "drip1._domainkey.clinic.test"
    dns.add(name, value)
    env = {"DRIP_DKIM_KEY": str(rsa), "DRIP_DKIM_SELECTOR": "drip1"}
    if ed25519:
        ed, name, value = keygen(project, tmp_path, "drip1e", "--ed25519")
        dns.add(name, value)
        env |= {"DRIP_DKIM_ED25519_KEY": str(ed), "DRIP_DKIM_ED25519_SELECTOR": "drip1e"}
    project.env.update(env)
    return env


def test_keygen_writes_a_private_key_and_prints_the_record(project, tmp_path):
    out, name, value = keygen(project, tmp_path, "s2026", "--bits", "2048")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert name == "s2026._domainkey.clinic.test" and value.startswith("v=DKIM1; k=rsa; p=")
    again = project.cli("dkim", "keygen", "--selector", "s2026", "--out", str(out))
    assert again.exit_code == 1 and "never overwrites a key" in again.output
    ed, _, ed_value = keygen(project, tmp_path, "e2026", "--ed25519")
    assert ed_value.startswith("v=DKIM1; k=ed25519; p=") and len(ed.read_text().strip()) == 44


def test_series_email_signed_rsa_and_ed25519_arrives_verifiable(project, sink, tmp_path):
    dns = Dns()
    dkim_env(project, tmp_path, dns)
    settings = Settings.from_env(project.env)
    signer = DkimSigner.from_settings(settings, "clinic.test")
    from drip.config import load_config

    clinic = load_config(project.config).clinic
    email = RenderedEmail("Welcome", "pre", "<p>Hello</p>" * 2000, "Hello\n" * 2000)
    ref = "ab" * 16
    data = compose(
        clinic,
        "pat@example.org",
        email,
        date=datetime(2026, 6, 1, 15, tzinfo=UTC),
        ref=ref,
        headers={
            "List-Unsubscribe": "<https://clinic.test/u/TOKEN>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Drip-Ref": ref,
        },
        sign=signer.sign,
    )
    transport = SMTPTransport.from_url(sink.url)
    transport.send(Envelope(return_path(clinic, ref), "pat@example.org", data))
    transport.close()
    received = sink.handler.wait_for(1)[0]
    assert verify_all(received.data, dns) == [True, True]
    sig = received.header("DKIM-Signature")
    assert "d=clinic.test" in sig and "a=rsa-sha256" in sig
    assert "list-unsubscribe : list-unsubscribe-post" in " ".join(sig.split())
    # the signature covers what it claims: a changed subject fails verification
    tampered = received.data.replace(b"Subject: Welcome", b"Subject: Welcome!")
    assert verify_all(tampered, dns) == [False, False]


def test_confirmation_email_from_the_web_side_is_signed(project, sink, tmp_path):
    dns = Dns()
    dkim_env(project, tmp_path, dns, ed25519=False)
    services = build_services(Settings.from_env(project.env))
    assert project.cli("subscribers", "add", "pat@example.org").exit_code == 0
    with Session(services.engine) as session:
        sub = find(session, "pat@example.org")
        assert queue_transactional(services, session, sub, CONFIRM_STEP)
        session.commit()
    transport = services.transport()
    try:  # the web worker's job: the queue's email goes out as it was signed
        deliver_queued(services.engine, transport, services.now)
    finally:
        transport.close()
    received = sink.handler.wait_for(1)[0]
    assert verify_all(received.data, dns) == [True]


def test_without_dkim_settings_nothing_is_signed(project, sink):
    send_to(project, "pat@example.org")
    assert sink.received[0].header("DKIM-Signature") == ""
    assert Settings.from_env(project.env).dkim_key is None


def test_check_reports_unusable_keys_and_misaligned_domains(project, tmp_path):
    dns = Dns()
    dkim_env(project, tmp_path, dns, ed25519=False)
    assert "warning" not in project.cli("check", "-q").output
    project.env["DRIP_DKIM_DOMAIN"] = "mailer.example.net"
    result = project.cli("check", "-q")
    assert result.exit_code == 0
    assert "warning: DKIM domain mailer.example.net does not align with the From domain" in (
        result.output
    )
    project.env["DRIP_DKIM_KEY"] = str(tmp_path / "missing.pem")
    missing = project.cli("check", "-q")
    assert missing.exit_code == 1 and "DRIP_DKIM_KEY: cannot read" in missing.output
    (tmp_path / "junk.pem").write_text("not a key")
    project.env["DRIP_DKIM_KEY"] = str(tmp_path / "junk.pem")
    junk = project.cli("check", "-q")
    assert "is not an RSA private key in PEM form" in junk.output
    del project.env["DRIP_DKIM_SELECTOR"]
    assert "DRIP_DKIM_SELECTOR is not" in project.cli("check", "-q").output


def test_alignment_rule():
    assert aligned("clinic.example", "clinic.example")
    assert aligned("mail.clinic.example", "clinic.example")
    assert aligned("clinic.example", "news.clinic.example")
    assert not aligned("clinic.example", "otherclinic.example")
    assert not aligned("esp.example", "clinic.example")


# -- signatures made with OpenSSL (drip/dkim_sign.py), checked by dkimpy's verifier -----

RSA_KEY, ED_KEY = generate_rsa(2048), generate_ed25519()
KEYS_DNS = Dns()
KEYS_DNS.add("fast._domainkey.clinic.example", RSA_KEY.dns_value)
KEYS_DNS.add("faste._domainkey.clinic.example", ED_KEY.dns_value)
RSA_ONLY = DkimSigner("clinic.example", [DkimKey(RSA, "fast", RSA_KEY.private)])
BOTH = DkimSigner(
    "clinic.example",
    [DkimKey(RSA, "fast", RSA_KEY.private), DkimKey(ED25519, "faste", ED_KEY.private)],
)
ONE_CLICK = {
    "List-Unsubscribe": "<https://clinic.example/u/TOKEN>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def message(
    subject: str = "Your visit on Monday",
    to: str = "Pat Lee <pat@example.org>",
    text: str = "Hello Pat,\n\nSee you soon.\n",
    html: str = "<p>Hello Pat,</p><p>See you soon.</p>",
    headers: dict[str, str] | None = None,
) -> bytes:
    return build_message(
        from_address="Vein Clinic <news@clinic.example>",
        to=to,
        subject=subject,
        text=text,
        html=html,
        date=datetime(2026, 6, 1, 15, tzinfo=UTC),
        message_id="<abc.123@clinic.example>",
        reply_to="Front desk <desk@clinic.example>",
        extra_headers=headers,
    )


MESSAGES = {
    "ascii": message(),
    "utf8 quoted-printable body": message(
        text="Café hours: 8–5 ✓\n" * 300 + "Ünïcödé = 100%\n", html="<p>Ça va ✓</p>" * 500
    ),
    "folded encoded-word headers": message(
        subject="Información útil sobre sus piernas: qué esperar después de la visita " * 2,
        to="Zoë Ångström-Müller 山田 <zoe@example.org>",
    ),
    "one-click unsubscribe": message(headers=ONE_CLICK),
    "trailing blank lines": message(text="Hello\n\n\n\n") + b"\r\n\r\n\r\n",
}


@pytest.mark.parametrize("signer", [RSA_ONLY, BOTH], ids=["rsa", "rsa+ed25519"])
@pytest.mark.parametrize("name", MESSAGES)
def test_openssl_signatures_verify_with_dkimpy(name, signer):
    signed = signer.sign(MESSAGES[name])
    assert signed.endswith(MESSAGES[name])
    assert verify_all(signed, KEYS_DNS) == [True] * len(signer.keys)
    head = signed.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if line.startswith(b" "))
    one_click = b"list-unsubscribe : list-unsubscribe-post" in b" ".join(head.split())
    assert one_click == (b"List-Unsubscribe:" in MESSAGES[name])


def test_relaxed_headers_survive_refolding_and_tampering_is_caught():
    signed = BOTH.sign(MESSAGES["one-click unsubscribe"])
    refolded = signed.replace(b"Subject: Your visit", b"Subject:  Your\r\n\tvisit")
    assert verify_all(refolded, KEYS_DNS) == [True, True]
    for tampered in (
        signed.replace(b"See you soon.", b"See you later"),  # body
        signed.replace(b"Subject: Your visit", b"Subject: Our visit"),  # signed header
        signed.replace(b"\r\n\r\n", b"\r\nFrom: evil@example.net\r\n\r\n", 1),  # 2nd From
        signed.replace(b"List-Unsubscribe-Post: ", b"List-Unsubscribe-Post: x"),
    ):
        assert tampered != signed
        assert verify_all(tampered, KEYS_DNS) == [False, False]


def test_bare_line_ends_are_signed_as_they_go_over_the_wire():
    """smtplib sends a bare LF or CR as CRLF; the signature covers those bytes."""
    crlf = MESSAGES["ascii"]
    signed = RSA_ONLY.sign(crlf.replace(b"\r\n", b"\n"))
    assert signed.endswith(crlf) and verify_all(signed, KEYS_DNS) == [True]


def test_a_lone_cr_in_template_text_still_verifies_after_smtp(sink):
    """quoted-printable keeps a lone CR; smtplib sends it as CRLF, and so the
    signature must cover CRLF there, or it breaks on the way."""
    data = message(text="Line one\rline two\n", html="<p>a\rb</p>")
    assert b"one\rline" in data
    transport = SMTPTransport.from_url(sink.url)
    transport.send(Envelope("news@clinic.example", "pat@example.org", BOTH.sign(data)))
    transport.close()
    received = sink.handler.wait_for(1)[0].data
    assert b"one\r\nline" in received and verify_all(received, KEYS_DNS) == [True, True]


def test_a_bad_key_fails_when_the_signer_is_made():
    with pytest.raises(ValueError):
        DkimSigner("clinic.example", [DkimKey(RSA, "s", ED_KEY.private)])
    with pytest.raises(ValueError):
        DkimSigner("clinic.example", [DkimKey(ED25519, "s", b"not base64!")])


# header text as a person or a template might produce it: no control characters
# but tab (RFC 5322 allows none), any other Unicode
header_text = st.text(
    st.one_of(st.characters(blacklist_categories=("Cc", "Cs")), st.sampled_from(" \t")),
    max_size=150,
)


@hypothesis.settings(max_examples=120, deadline=None)
@given(
    subject=header_text,
    name=header_text,
    text=st.text(max_size=2000),
    html=st.text(max_size=2000),
    one_click=st.booleans(),
)
def test_every_signature_verifies_with_dkimpy(subject, name, text, html, one_click):
    data = message(
        subject, f"{name} <pat@example.org>", text, html, ONE_CLICK if one_click else None
    )
    assert verify_all(BOTH.sign(data), KEYS_DNS) == [True, True]


@hypothesis.settings(max_examples=120, deadline=None)
@given(
    body=st.binary(max_size=600)
    | st.lists(st.sampled_from([b"", b" ", b"a \t", b"\r"])).map(b"\r\n".join)
)
def test_any_body_bytes_verify_with_dkimpy(body):
    """Simple body canonicalization at its edges: empty, blank lines, bare CR/LF, 8-bit."""
    head = MESSAGES["ascii"].split(b"\r\n\r\n")[0]
    signed = BOTH.sign(head + b"\r\n\r\n" + body)
    assert verify_all(signed, KEYS_DNS) == [True, True]
