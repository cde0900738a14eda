"""Signed, opaque tokens for the links in every email.

A token carries only the subscriber's random public id, signed with
DRIP_SECRET_KEY; one purpose's token is useless for another (salted). Nothing
about the person's symptoms or address ever appears in a URL.

Key rotation: new links are signed with the current key only; links signed with
any of the old keys (DRIP_OLD_SECRET_KEYS) still verify, so emails already in
inboxes keep working until the old key is dropped.

Confirmation and preferences links carry the time they were made: confirmation
links expire, and an old preferences link asks for a fresh one by email before
showing anyone's answers. Unsubscribe links never expire.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from itsdangerous import (
    BadData,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import int_to_bytes

UNSUBSCRIBE = "drip.unsubscribe"
PREFERENCES = "drip.preferences"
CONFIRM = "drip.confirm"
CONFIRM_MAX_AGE = 7 * 24 * 3600  # confirmation links expire after a week
TIMED = (CONFIRM, PREFERENCES)
# payloads up to this many bytes are signed as they are, never compressed: `make`
SHORT_PAYLOAD = 40


class TokenError(Exception):
    """The token is forged, damaged, for another purpose, or expired."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


class Tokens:
    def __init__(
        self,
        secret: str,
        old_secrets: Sequence[str] = (),
        clock: Callable[[], datetime] | None = None,
    ):
        # itsdangerous signs with the last key and verifies with any of them
        self._keys: list[str] = [*(k for k in old_secrets if k != secret), secret]
        self._signer: type[TimestampSigner] = TimestampSigner
        self._now: Callable[[], float] = time.time
        if clock is not None:  # an injected clock stamps and ages links (tests, --now)
            now = clock
            self._now = lambda: now().timestamp()

            class _ClockSigner(TimestampSigner):
                def get_timestamp(self) -> int:
                    return int(now().timestamp())

            self._signer = _ClockSigner
        # itsdangerous derives the signing key from the secret on every token (a
        # SHA-1, a new Signer and HMAC objects): two links per email sent, so the
        # derived keys are kept per purpose and `make` signs in one C call
        self._derived: dict[str, bytes] = {}
        self._payload: tuple[str | None, bytes] = (None, b"")  # the last public id's

    def __repr__(self) -> str:
        return f"Tokens(<{len(self._keys)} keys masked>)"

    def make(self, purpose: str, public_id: str) -> str:
        """What itsdangerous's URLSafe(Timed)Serializer(keys, salt=purpose)
        .dumps(public_id) gives, faster: byte for byte, except that a short payload is
        never compressed (tests/test_tokens.py compares them); itsdangerous reads both."""
        # every email signs two links for one public id: its payload is made once
        last_id, value = self._payload
        if last_id != public_id:
            if public_id.isascii() and public_id.isalnum():  # JSON's quotes are all it needs
                value = b'"' + public_id.encode() + b'"'
            else:
                value = json.dumps(public_id, ensure_ascii=False, separators=(",", ":")).encode()
            # itsdangerous tries zlib on every payload and keeps the result when it is
            # shorter. A short one never is in practice (a 32-character random id: not
            # once in 300,000), and each try costs 26 us (zlib sets up its 256 KB state),
            # a fifteenth of what the sending parent spends on a message. Skipped, the
            # token is itsdangerous's uncompressed form, which it reads just the same.
            compressed = zlib.compress(value) if len(value) > SHORT_PAYLOAD else value
            if len(compressed) < len(value) - 1:
                value = b"." + _base64(compressed)
            else:
                value = _base64(value)
            self._payload = (public_id, value)
        if purpose in TIMED:
            value += b"." + _base64(int_to_bytes(int(self._now())))
        key = self._derived.get(purpose)
        if key is None:  # itsdangerous's "django-concat" derivation, with the newest key
            secret = self._keys[-1].encode("utf-8")
            key = self._derived[purpose] = hashlib.sha1(
                purpose.encode("utf-8") + b"signer" + secret
            ).digest()
        signature = _base64(hmac.digest(key, value, "sha1"))
        return (value + b"." + signature).decode("ascii")

    def read(self, purpose: str, token: str, max_age: int = CONFIRM_MAX_AGE) -> str:
        """The public id inside `token`, or TokenError."""
        if purpose == PREFERENCES:
            return self.read_issued(purpose, token)[0]
        try:
            if purpose in TIMED:
                value = URLSafeTimedSerializer(self._keys, salt=purpose, signer=self._signer).loads(
                    token, max_age=max_age
                )
            else:
                value = URLSafeSerializer(self._keys, salt=purpose).loads(token)
        except SignatureExpired:
            raise TokenError("this link has expired", expired=True) from None
        except BadData:
            raise TokenError("this link is not valid") from None
        return _public_id(value)

    def read_issued(self, purpose: str, token: str) -> tuple[str, datetime | None]:
        """The public id and when the link was made (None: an untimed link from
        before links carried a time, so its age is unknown)."""
        try:
            value, issued = URLSafeTimedSerializer(
                self._keys, salt=purpose, signer=self._signer
            ).loads(token, return_timestamp=True)
            return _public_id(value), issued.astimezone(UTC)
        except BadData:
            pass
        try:
            value = URLSafeSerializer(self._keys, salt=purpose).loads(token)
        except BadData:
            raise TokenError("this link is not valid") from None
        return _public_id(value), None


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _base64(data: bytes) -> bytes:
    """itsdangerous's base64_encode (URL-safe, unpadded), without its three layers
    of Python calls: five a message."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _public_id(value: object) -> str:
    if not isinstance(value, str):
        raise TokenError("this link is not valid")
    return value


def links(tokens: Tokens, base_url: str, public_id: str) -> dict[str, str]:
    """The per-subscriber URLs every email carries."""
    return {
        "unsubscribe_url": f"{base_url}/u/{tokens.make(UNSUBSCRIBE, public_id)}",
        "preferences_url": f"{base_url}/p/{tokens.make(PREFERENCES, public_id)}",
    }
