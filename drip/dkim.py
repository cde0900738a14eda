"""DKIM signing of outgoing mail (RFC 6376; ed25519 per RFC 8463).

Many clinics send through a relay that does not sign, and Gmail and Yahoo require
DKIM aligned with the From domain. `DkimSigner.sign` takes the exact bytes that
go over SMTP and returns them with DKIM-Signature header(s) prepended: one
rsa-sha256 signature, plus an ed25519-sha256 one when a second key is set
(receivers that do not know ed25519 ignore that one and use the RSA signature).

The keys are parsed once, when the signer is made, and the signatures are made
by OpenSSL through `cryptography` (drip/dkim_sign.py has the procedure): about
1 ms per email for RSA 2048, where dkimpy's pure-Python RSA took 13-25 ms.

Key files: the RSA key is PEM (PKCS#1 or PKCS#8). The ed25519 key is dkimpy's
format (the base64 32-byte seed, what `drip dkim keygen --ed25519` writes) or a
PKCS#8 PEM from `openssl genpkey -algorithm ed25519`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .dkim_sign import normalize_line_ends, signature_header, simple_body_hash, split_message
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .config import Config

# Signed when present (RFC 6376 5.4): what a reader sees and what one-click
# unsubscribe depends on (Gmail wants both List-Unsubscribe headers covered).
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
)
RSA, ED25519 = b"rsa-sha256", b"ed25519-sha256"
# drip signs c=relaxed/simple (drip/dkim_sign.py): relaxed headers survive relays
# that re-fold them; a simple body costs nothing to canonicalize and drip's body
# has no trailing spaces or long lines for a relay to touch (quoted-printable)


@dataclass(frozen=True)
class DkimKey:
    algorithm: bytes  # RSA or ED25519
    selector: str
    private: bytes  # the key file's content: PEM for RSA, the base64 seed for ed25519


def _digest_signer(key: DkimKey) -> Callable[[bytes], bytes]:
    """A function from a SHA-256 digest to the signature, the key parsed now."""
    if key.algorithm == RSA:
        private = serialization.load_pem_private_key(key.private, password=None)
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("not an RSA private key")
        pkcs1, sha256 = padding.PKCS1v15(), Prehashed(hashes.SHA256())
        return lambda digest: private.sign(digest, pkcs1, sha256)
    if key.algorithm == ED25519:
        seed = base64.b64decode(key.private.strip(), validate=True)
        # RFC 8463 3: ed25519-sha256 signs the SHA-256 digest with pure Ed25519
        return Ed25519PrivateKey.from_private_bytes(seed).sign
    raise ValueError(f"unknown DKIM algorithm {key.algorithm!r}")


class DkimSigner:
    """Signs for one domain with one or two keys."""

    def __init__(self, domain: str, keys: list[DkimKey], clock: Callable[[], float] = time.time):
        if not keys:
            raise ValueError("a DKIM signer needs at least one key")
        self.domain = domain.lower()
        self.keys = keys
        self._clock = clock  # for t=
        name = self.domain.rstrip(".")
        self._domain = name.encode("ascii") if name.isascii() else name.encode("idna")
        self._signers = [
            (key.algorithm, key.selector.encode("ascii"), _digest_signer(key)) for key in keys
        ]

    @classmethod
    def from_settings(cls, settings: Settings, from_domain: str) -> DkimSigner | None:
        """The signer DRIP_DKIM_* describe, None when DKIM is not configured.

        Raises SettingsError (one clear line) when a key is missing or unreadable.
        """
        if settings.dkim_key is None and settings.dkim_ed25519_key is None:
            return None
        if settings.dkim_key is None:
            raise SettingsError(
                "DRIP_DKIM_ED25519_KEY needs DRIP_DKIM_KEY as well: many receivers do not "
                "check ed25519 signatures yet, so an RSA signature must always be there"
            )
        if not settings.dkim_selector:
            raise SettingsError("DRIP_DKIM_KEY is set but DRIP_DKIM_SELECTOR is not")
        keys = [DkimKey(RSA, settings.dkim_selector, load_rsa_key(settings.dkim_key))]
        if settings.dkim_ed25519_key is not None:
            selector = settings.dkim_ed25519_selector or f"{settings.dkim_selector}-ed25519"
            keys.append(DkimKey(ED25519, selector, load_ed25519_key(settings.dkim_ed25519_key)))
        return cls(settings.dkim_domain or from_domain, keys)

    def sign(self, data: bytes) -> bytes:
        """`data` with DKIM-Signature header(s) prepended; send exactly these bytes.

        Line ends become CRLF first, as smtplib would make them on the wire.
        """
        data = normalize_line_ends(data)
        headers, body = split_message(data)
        body_hash = simple_body_hash(body)  # both keys: same c= and SHA-256
        present = {name.strip(b" \t").lower() for name, _ in headers}
        include = [h.lower().encode() for h in SIGNED_HEADERS if h.lower().encode() in present]
        include.append(b"from")  # signed twice: a From added on the way breaks the signature
        timestamp = int(self._clock())
        signatures = [
            signature_header(
                headers,
                body_hash,
                domain=self._domain,
                selector=selector,
                algorithm=algorithm,
                sign_digest=sign_digest,
                include=include,
                timestamp=timestamp,
            )
            for algorithm, selector, sign_digest in self._signers
        ]
        return b"".join(signatures) + data


# -- keys ------------------------------------------------------------------------------


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None


def load_rsa_key(path: Path) -> bytes:
    data = _read(path, "DRIP_DKIM_KEY")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # not PEM, encrypted, odd
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SettingsError(
            f"DRIP_DKIM_KEY: {path} is not an RSA private key in PEM form "
            "(make one with `drip dkim keygen`)"
        )
    if key.key_size < 1024:
        raise SettingsError(f"DRIP_DKIM_KEY: {path} is a {key.key_size}-bit key; use 2048 bits")
    return data


def load_ed25519_key(path: Path) -> bytes:
    data = _read(path, "DRIP_DKIM_ED25519_KEY").strip()
    if data.startswith(b"-----BEGIN"):
        data = _ed25519_seed_from_pem(data, path)
    try:
        seed = base64.b64decode(data, validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise SettingsError(
            f"DRIP_DKIM_ED25519_KEY: {path} is not an ed25519 private key "
            "(make one with `drip dkim keygen --ed25519`)"
        )
    return data


def _ed25519_seed_from_pem(data: bytes, path: Path) -> bytes:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise SettingsError(f"DRIP_DKIM_ED25519_KEY: {path} is not an ed25519 private key")
    return base64.b64encode(_raw_seed(key))


def _raw_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class NewKey:
    private: bytes  # file content
    dns_value: str  # the TXT record's value


def generate_rsa(bits: int = 2048) -> NewKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return NewKey(pem, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")


def generate_ed25519() -> NewKey:
    """The key file holds the base64 seed (dkimpy's format); the record the raw
    32-byte public key (RFC 8463 4)."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    seed = base64.b64encode(_raw_seed(key))
    return NewKey(seed + b"\n", f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}")


def write_private(path: Path, content: bytes) -> None:
    """Create `path` readable by its owner only; never overwrite a key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)


def dns_record(selector: str, domain: str, value: str) -> str:
    """A zone-file line; values over 255 characters are split into quoted strings."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{domain}. IN TXT ( {quoted} )"


# -- alignment (DMARC) -------------------------------------------------------------------


def aligned(domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment, approximated without the Public Suffix List:
    the same domain, or one a subdomain of the other."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def alignment_warnings(settings: Settings, from_domain: str, bounce_domain: str = "") -> list[str]:
    """What `drip check` says about DKIM and the bounce address against the From domain."""
    warnings = []
    dkim_domain = settings.dkim_domain if settings.dkim_key else None
    if dkim_domain and not aligned(dkim_domain, from_domain):
        warnings.append(
            f"DKIM domain {dkim_domain} does not align with the From domain "
            f"{from_domain}: DMARC will fail unless the relay signs for {from_domain}"
        )
    if bounce_domain and not aligned(bounce_domain, from_domain):
        warnings.append(
            f"bounce_address domain {bounce_domain} does not align with the From domain "
            f"{from_domain}: SPF will not count for DMARC, so DKIM must"
        )
    return warnings


def dkim_sign_for(settings: Settings, config: Config) -> Callable[[bytes], bytes] | None:
    """The `sign` hook for message.compose, or None without DKIM settings.

    Raises SettingsError when the DKIM settings are wrong.
    """
    signer = DkimSigner.from_settings(settings, config.clinic.sender_domain)
    return signer.sign if signer is not None else None
