"""The links' tokens: drip signs them itself (fast), itsdangerous reads them.

`Tokens.make` must give exactly itsdangerous's own token, byte for byte, or the
same token uncompressed where the payload is short (itsdangerous tries zlib on
every payload; drip does not on short ones, which never shrink): either way the
web app, which reads links with itsdangerous, must read them back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import (
    Serializer,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode

from drip.tokens import (
    CONFIRM,
    PREFERENCES,
    SHORT_PAYLOAD,
    TIMED,
    UNSUBSCRIBE,
    TokenError,
    Tokens,
)

PURPOSES = st.sampled_from([UNSUBSCRIBE, PREFERENCES, CONFIRM, "another.purpose"])
KEYS = st.text(min_size=1, max_size=40)
# public ids are 32 hex characters; any text must still match (repetitive text compresses)
IDS = st.one_of(st.text(max_size=80), st.from_regex(r"\A[0-9a-f]{32}\Z"), st.just("a" * 200))
TIMES = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


class _Uncompressed:
    """itsdangerous's URL-safe payload without its zlib try (what drip signs for
    short payloads)."""

    def dump_payload(self, obj: object) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))  # type: ignore[arg-type]


class _PlainSerializer(_Uncompressed, URLSafeSerializer):
    pass


class _PlainTimedSerializer(_Uncompressed, URLSafeTimedSerializer):
    pass


def itsdangerous_token(
    keys: list[str], purpose: str, public_id: str, when: datetime, compress: bool = True
) -> str:
    """itsdangerous's own token (`compress=False`: without its zlib try)."""
    if purpose not in TIMED:
        plain = URLSafeSerializer if compress else _PlainSerializer
        return plain(keys, salt=purpose).dumps(public_id)

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when.timestamp())

    timed = URLSafeTimedSerializer if compress else _PlainTimedSerializer
    return timed(keys, salt=purpose, signer=Signer).dumps(public_id)


def reference(keys: list[str], purpose: str, public_id: str, when: datetime) -> str:
    """What drip must sign: itsdangerous's token, uncompressed for a short payload."""
    short = len(json.dumps(public_id, ensure_ascii=False).encode()) <= SHORT_PAYLOAD
    return itsdangerous_token(keys, purpose, public_id, when, compress=not short)


def read_back(keys: list[str], purpose: str, token: str) -> object:
    """What itsdangerous itself (as the web app uses it) reads from `token`."""
    if purpose in TIMED:
        return URLSafeTimedSerializer(keys, salt=purpose).loads(token)
    return URLSafeSerializer(keys, salt=purpose).loads(token)


@settings(max_examples=300, deadline=None)
@given(secret=KEYS, old=st.lists(KEYS, max_size=2), purpose=PURPOSES, public_id=IDS, when=TIMES)
def test_make_is_itsdangerous_byte_for_byte(
    secret: str, old: list[str], purpose: str, public_id: str, when: datetime
) -> None:
    tokens = Tokens(secret, old, clock=lambda: when)
    keys = [*(k for k in old if k != secret), secret]
    token = tokens.make(purpose, public_id)
    assert token == reference(keys, purpose, public_id, when)
    assert token == tokens.make(purpose, public_id)  # the cached key gives the same
    assert read_back(keys, purpose, token) == public_id


def test_short_payloads_that_would_compress_are_signed_uncompressed_and_still_read() -> None:
    """itsdangerous compresses "0" * 32 (it shrinks); drip signs it as it is, and
    both forms read back, so links already in inboxes keep working."""
    keys, when = ["a-secret-0123456789"], datetime(2026, 5, 1, tzinfo=UTC)
    tokens = Tokens(keys[0], clock=lambda: when)
    for purpose in (UNSUBSCRIBE, PREFERENCES, CONFIRM):
        ours = tokens.make(purpose, "0" * 32)
        theirs = itsdangerous_token(keys, purpose, "0" * 32, when)
        assert theirs.startswith(".") and not ours.startswith(".")  # compressed; not
        assert ours == reference(keys, purpose, "0" * 32, when)
        assert tokens.read(purpose, ours) == tokens.read(purpose, theirs) == "0" * 32
    # a long repetitive payload (a confirm link's id and change) is compressed as before
    long_id = "ab" * 40
    assert tokens.make(CONFIRM, long_id).startswith(".")


@settings(max_examples=100, deadline=None)
@given(calls=st.lists(st.tuples(PURPOSES, IDS), min_size=1, max_size=8), when=TIMES)
def test_one_tokens_object_signs_many_ids_and_purposes_in_any_order(
    calls: list[tuple[str, str]], when: datetime
) -> None:
    """As the sending child uses it: one Tokens for a whole run, links for id after id
    (it keeps the last id's payload: it must never leak into another id's token)."""
    tokens = Tokens("run-secret-0123456789", clock=lambda: when)
    for purpose, public_id in calls:
        expected = reference(["run-secret-0123456789"], purpose, public_id, when)
        assert tokens.make(purpose, public_id) == expected


def test_tokens_read_back_and_are_bound_to_their_purpose() -> None:
    tokens = Tokens("s3cret-key-for-the-test-0123456789")
    for purpose in (UNSUBSCRIBE, PREFERENCES, CONFIRM):
        token = tokens.make(purpose, "ab" * 16)
        assert tokens.read(purpose, token) == "ab" * 16
        other = next(p for p in (UNSUBSCRIBE, PREFERENCES, CONFIRM) if p != purpose)
        with pytest.raises(TokenError):
            tokens.read(other, token)
    # signed with an old key: still read after rotation; a forged one is not
    old = Tokens("old-key-0123456789").make(UNSUBSCRIBE, "cd" * 16)
    rotated = Tokens("new-key-0123456789", ["old-key-0123456789"])
    assert rotated.read(UNSUBSCRIBE, old) == "cd" * 16
    with pytest.raises(TokenError):
        rotated.read(UNSUBSCRIBE, old[:-2] + ("AA" if old[-2:] != "AA" else "BB"))
