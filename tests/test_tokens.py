"""The links' tokens: drip signs them itself (fast), itsdangerous reads them.

`Tokens.make` must give exactly itsdangerous's own token, byte for byte, or links
already in inboxes (and the web app that reads them) would break.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer

from drip.tokens import CONFIRM, PREFERENCES, TIMED, UNSUBSCRIBE, TokenError, Tokens

PURPOSES = st.sampled_from([UNSUBSCRIBE, PREFERENCES, CONFIRM, "another.purpose"])
KEYS = st.text(min_size=1, max_size=40)
# public ids are 32 hex characters; any text must still match (repetitive text compresses)
IDS = st.one_of(st.text(max_size=80), st.from_regex(r"\A[0-9a-f]{32}\Z"), st.just("a" * 200))
TIMES = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def reference(keys: list[str], purpose: str, public_id: str, when: datetime) -> str:
    if purpose not in TIMED:
        return URLSafeSerializer(keys, salt=purpose).dumps(public_id)

    class Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when.timestamp())

    return URLSafeTimedSerializer(keys, salt=purpose, signer=Signer).dumps(public_id)


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
