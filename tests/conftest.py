"""Shared fixtures: a real SMTP server, a real SQLite file, the real `drip` command."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from mailsink import MailSink

from drip.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def sink():
    server = MailSink().start()
    yield server
    server.stop()


@dataclass
class Project:
    """A folder with campaigns.toml, templates and a database, plus the env to use it."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "campaigns.toml"

    @property
    def templates(self) -> Path:
        return self.root / "templates" / "emails"

    @property
    def database_url(self) -> str:
        return self.env["DRIP_DATABASE_URL"]

    def cli(self, *args: str, input: str | None = None) -> Result:
        """Run drip in-process (click's CliRunner) with this project's environment."""
        return CliRunner().invoke(
            main, list(args), env=self.env, input=input, catch_exceptions=False
        )

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the real `drip` command in a separate process."""
        return subprocess.run(
            [sys.executable, "-m", "drip", *args],
            env=self.full_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "drip", *args],
            env=self.full_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_interruptible,
        )

    def run_on_terminal(self, *args: str, timeout: float = 120) -> tuple[int, str]:
        """Run the real `drip` command on a pseudo-terminal, as a person at a shell
        would (progress bars show); its exit code and everything it wrote."""
        import pty

        leader, follower = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "drip", *args],
            env=self.full_env(),
            stdin=follower,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
        code = proc.wait(timeout=timeout)
        os.close(leader)
        return code, output.decode(errors="replace")

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))


def _interruptible() -> None:
    """In the child: Ctrl-C (SIGINT) stops drip, even when pytest itself was started
    in the background (`cmd &`), where the shell makes it and its children ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_project(root: Path, source: Path, smtp_url: str | None = None) -> Project:
    shutil.copy(source / "campaigns.toml", root / "campaigns.toml")
    shutil.copytree(source / "templates", root / "templates")
    env = {
        "DRIP_CONFIG": str(root / "campaigns.toml"),
        "DRIP_DATABASE_URL": f"sqlite:///{root / 'drip.db'}",
        "DRIP_SECRET_KEY": SECRET,
    }
    if smtp_url:
        env["DRIP_SMTP_URL"] = smtp_url
    return Project(root, env)


@pytest.fixture
def project(tmp_path: Path, sink: MailSink) -> Project:
    """The engine tests' fixed campaign, wired to the real SMTP sink."""
    return make_project(tmp_path, FIXTURES / "basic", sink.url)


@pytest.fixture
def shipped(tmp_path: Path, sink: MailSink) -> Project:
    """The campaigns.toml and templates that ship with drip."""
    root = tmp_path / "shipped"
    root.mkdir()
    shutil.copy(REPO / "campaigns.toml", root / "campaigns.toml")
    shutil.copytree(REPO / "templates", root / "templates")
    return make_project_from(root, sink.url)


def make_project_from(root: Path, smtp_url: str) -> Project:
    return Project(
        root,
        {
            "DRIP_CONFIG": str(root / "campaigns.toml"),
            "DRIP_DATABASE_URL": f"sqlite:///{root / 'drip.db'}",
            "DRIP_SECRET_KEY": SECRET,
            "DRIP_SMTP_URL": smtp_url,
        },
    )


def _postgres_url() -> str | None:
    url = os.environ.get("DRIP_TEST_POSTGRES_URL")
    if not url and os.environ.get("CI"):
        raise RuntimeError("CI must set DRIP_TEST_POSTGRES_URL (see .ci/run)")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_project(request, tmp_path: Path, sink: MailSink):
    """The fixture project on each database engine drip supports.

    PostgreSQL runs need DRIP_TEST_POSTGRES_URL (a server where we may create
    databases); .ci/run starts one. Each test gets a fresh database.
    """
    project = make_project(tmp_path, FIXTURES / "basic", sink.url)
    if request.param == "sqlite":
        yield project
        return
    url = _postgres_url()
    if not url:
        pytest.skip("set DRIP_TEST_POSTGRES_URL to run the PostgreSQL variant")
    import secrets

    import psycopg

    name = f"drip_test_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    project.env["DRIP_DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
    yield project
    from drip.db import make_engine

    make_engine(project.database_url).dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def summary(output: str) -> dict[str, int]:
    """The counts in the last `drip send:` summary line of `output` ("sent", "failed",
    "in_doubt", ...); parsed, so "60 sent" is never mistaken for "0 sent"."""
    import re

    lines = [ln for ln in output.splitlines() if ln.startswith("drip send:")]
    assert lines, f"no summary line in {output!r}"
    counts = {
        word.replace(" ", "_"): int(n)
        for n, word in re.findall(
            r"\b(\d+) (would send|sent|skipped|deferred|failed|bounced)\b", lines[-1]
        )
    }
    doubt = re.search(r"(\d+) in doubt \((\d+) new\)", lines[-1])
    counts["in_doubt"] = int(doubt.group(1)) if doubt else 0
    counts["in_doubt_new"] = int(doubt.group(2)) if doubt else 0
    return counts


def kill_mid_send(project: Project, sink: MailSink, connections: int, after: int, now: str) -> int:
    """Start `drip send` against a slow relay, `kill -9` it once `after` messages have
    arrived (so some are in flight), and return how many the server got in all."""
    sink.handler.delay = 0.05  # a slow relay: the kill lands with messages in flight
    project.env["DRIP_SMTP_URL"] = sink.url + f"&connections={connections}"
    proc = project.popen("send", "--now", now)
    sink.handler.wait_for(after, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.3)  # let the server finish the transactions it was in
    sink.handler.delay = 0
    return len(sink.received)


@pytest.fixture
def tls_context(tmp_path) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, made for this test."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return context
