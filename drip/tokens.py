"""Signed, opaque tokens for the links in every email.

A token carries only the subscriber's random public id, signed with
DRIP_SECRET_KEY; one purpose's token is useless for another (salted). Nothing
about the person's symptoms or address ever appears in a URL.
"""

from __future__ import annotations

from itsdangerous import BadData, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

UNSUBSCRIBE = "drip.unsubscribe"
PREFERENCES = "drip.preferences"
CONFIRM = "drip.confirm"
CONFIRM_MAX_AGE = 7 * 24 * 3600  # confirmation links expire after a week


class TokenError(Exception):
    """The token is forged, damaged, for another purpose, or expired."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


class Tokens:
    def __init__(self, secret: str):
        self._secret = secret
        # built once: two per email sent
        self._makers: dict[str, URLSafeSerializer | URLSafeTimedSerializer] = {}

    def make(self, purpose: str, public_id: str) -> str:
        maker = self._makers.get(purpose)
        if maker is None:
            kind = URLSafeTimedSerializer if purpose == CONFIRM else URLSafeSerializer
            maker = self._makers[purpose] = kind(self._secret, salt=purpose)
        return str(maker.dumps(public_id))

    def read(self, purpose: str, token: str, max_age: int = CONFIRM_MAX_AGE) -> str:
        """The public id inside `token`, or TokenError."""
        try:
            if purpose == CONFIRM:
                value = URLSafeTimedSerializer(self._secret, salt=purpose).loads(
                    token, max_age=max_age
                )
            else:
                value = URLSafeSerializer(self._secret, salt=purpose).loads(token)
        except SignatureExpired:
            raise TokenError("this link has expired", expired=True) from None
        except BadData:
            raise TokenError("this link is not valid") from None
        if not isinstance(value, str):
            raise TokenError("this link is not valid")
        return value


def links(tokens: Tokens, base_url: str, public_id: str) -> dict[str, str]:
    """The per-subscriber URLs every email carries."""
    return {
        "unsubscribe_url": f"{base_url}/u/{tokens.make(UNSUBSCRIBE, public_id)}",
        "preferences_url": f"{base_url}/p/{tokens.make(PREFERENCES, public_id)}",
    }
