"""What does DKIM signing cost per email? Milliseconds per message, by key type.

    python bench/bench_dkim.py [--emails 100]

Builds the largest email of the shipped series the way `drip send` does (the
shipped campaigns.toml and templates, rendered, composed with the one-click
headers; about 26-32 KB) and signs it N times per row: RSA 2048, ed25519, and
both (what drip does when both keys are set), each two ways:

- before: dkimpy.sign, as drip did until the OpenSSL signer (the PEM parsed on
  every call, the RSA private-key operation in pure Python);
- after: drip's DkimSigner (keys parsed once, signatures by OpenSSL).

The last row is the RSA 2048 private-key operation alone in OpenSSL, the floor
for an RSA signature.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dkim as dkimpy

from drip.checks import preview_links
from drip.config import load_config
from drip.dkim import (
    ED25519,
    RSA,
    SIGNED_HEADERS,
    DkimKey,
    DkimSigner,
    generate_ed25519,
    generate_rsa,
    load_ed25519_key,
    load_rsa_key,
    write_private,
)
from drip.message import compose
from drip.render import Renderer, subscriber_context

ROOT = Path(__file__).resolve().parent.parent


def largest_email() -> bytes:
    config = load_config(ROOT / "campaigns.toml")
    renderer = Renderer(config.templates_dir)
    best = b""
    symptoms = set(config.symptoms)
    for campaign in config.campaigns:
        for step in campaign.steps:
            context = subscriber_context(
                config,
                first_name="Alex",
                symptoms=symptoms,
                links=preview_links(config),
                campaign=campaign,
                step=step,
            )
            data = compose(
                config.clinic,
                "patient@example.org",
                renderer.render(step, context),
                date=datetime.now(UTC),
                ref="ab" * 16,
                headers={
                    "List-Unsubscribe": "<https://clinic.example/u/TOKEN>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    "X-Drip-Ref": "ab" * 16,
                },
            )
            best = max(best, data, key=len)
    return best


def per_call_ms(fn: Callable[[], object], n: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def dkimpy_sign(data: bytes, keys: list[DkimKey], domain: str) -> bytes:
    """The signer drip used before: dkimpy.sign once per key, same headers and c=."""
    lower = data.split(b"\r\n\r\n")[0].lower()
    include = [h.lower().encode() for h in SIGNED_HEADERS]
    include = [h for h in include if lower.startswith(h + b":") or b"\n" + h + b":" in lower]
    signatures = [
        dkimpy.sign(
            data,
            key.selector.encode(),
            domain.encode(),
            key.private,
            canonicalize=(b"relaxed", b"simple"),
            signature_algorithm=key.algorithm,
            include_headers=[*include, b"from"],
        )
        for key in keys
    ]
    return b"".join(signatures) + data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=100)
    n = parser.parse_args().emails
    data = largest_email()
    with tempfile.TemporaryDirectory() as tmp:
        rsa_path, ed_path = Path(tmp) / "rsa.pem", Path(tmp) / "ed.key"
        write_private(rsa_path, generate_rsa(2048).private)
        write_private(ed_path, generate_ed25519().private)
        rsa = DkimKey(RSA, "s", load_rsa_key(rsa_path))
        ed = DkimKey(ED25519, "e", load_ed25519_key(ed_path))
    print(f"message: {len(data):,} bytes, {n} signatures per row")
    print(f"{'':20} {'before (dkimpy)':>16} {'after (OpenSSL)':>16}")
    for name, keys in {
        "rsa-sha256 (2048)": [rsa],
        "ed25519-sha256": [ed],
        "both": [rsa, ed],
    }.items():
        before = per_call_ms(lambda k=keys: dkimpy_sign(data, k, "clinic.example"), n)
        signer = DkimSigner("clinic.example", keys)
        after = per_call_ms(lambda s=signer: s.sign(data), n)
        print(f"{name:20} {before:10.2f} ms/email {after:10.2f} ms/email")

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric import rsa as crsa

    key = crsa.generate_private_key(public_exponent=65537, key_size=2048)
    digest = b"x" * 32
    ms = per_call_ms(lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256()), n)
    print(f"{'RSA 2048 op alone':20} {'':16} {ms:10.2f} ms")


if __name__ == "__main__":
    main()
