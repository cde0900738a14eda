"""DKIM: keys from `drip dkim keygen`, signatures checked by dkimpy's own verifier.

The public key comes from the TXT record keygen prints, served to the verifier
by an injected DNS function (no network).
"""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime

import dkim as dkimpy
from deliver_helpers import send_to
from sqlalchemy.orm import Session

from drip.dkim import DkimSigner, aligned
from drip.message import Envelope, compose, return_path
from drip.render import RenderedEmail
from drip.settings import Settings
from drip.subscribers import find
from drip.transport import SMTPTransport
from drip.web.app import build_services
from drip.web.mailer import CONFIRM_STEP
from drip.web.mailer import send as send_transactional

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
    return [checker.verify(idx=i, dnsfunc=dns) for i in range(count)]


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
        assert send_transactional(services, sub, CONFIRM_STEP)
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
