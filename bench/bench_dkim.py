"""What does DKIM signing cost per email? Milliseconds per message, by key type.

    python bench/bench_dkim.py [--emails 200]

Builds the largest email of the shipped series the way `drip send` does (the
shipped campaigns.toml and templates, rendered, composed with the one-click
headers; about 26 KB) and signs it N times with dkimpy: RSA 2048, ed25519, and
both (what drip does when both keys are set). For scale it also times the RSA
private-key operation alone in OpenSSL (via `cryptography`) and in dkimpy's
pure-Python arithmetic, which is where most of the RSA time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from drip.checks import preview_links
from drip.config import load_config
from drip.dkim import (
    ED25519,
    RSA,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=200)
    n = parser.parse_args().emails
    data = largest_email()
    with tempfile.TemporaryDirectory() as tmp:
        rsa_path, ed_path = Path(tmp) / "rsa.pem", Path(tmp) / "ed.key"
        write_private(rsa_path, generate_rsa(2048).private)
        write_private(ed_path, generate_ed25519().private)
        rsa = DkimKey(RSA, "s", load_rsa_key(rsa_path))
        ed = DkimKey(ED25519, "e", load_ed25519_key(ed_path))
    print(f"message: {len(data):,} bytes, {n} signatures per row")
    rows = {
        "rsa-sha256 (2048)": DkimSigner("clinic.example", [rsa]),
        "ed25519-sha256": DkimSigner("clinic.example", [ed]),
        "both": DkimSigner("clinic.example", [rsa, ed]),
    }
    for name, signer in rows.items():
        print(f"{name:28} {per_call_ms(lambda s=signer: s.sign(data), n):7.2f} ms/email")

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric import rsa as crsa

    key = crsa.generate_private_key(public_exponent=65537, key_size=2048)
    digest = b"x" * 32
    ms = per_call_ms(lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256()), n)
    print(f"{'RSA 2048 op, OpenSSL':28} {ms:7.2f} ms")
    import dkim.crypto

    pk = dkim.crypto.parse_pem_private_key(rsa.private)
    import hashlib

    ms = per_call_ms(
        lambda: dkim.crypto.RSASSA_PKCS1_v1_5_sign(hashlib.sha256(digest), pk), max(n // 4, 10)
    )
    print(f"{'RSA 2048 op, dkimpy Python':28} {ms:7.2f} ms")


if __name__ == "__main__":
    main()
