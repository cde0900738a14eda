"""CSRF protection for drip's own forms (OWASP: signed double-submit cookie).

A form drip serves carries `csrf_token`: a random nonce, signed and time-stamped
with DRIP_SECRET_KEY. The same nonce sits in the `drip_csrf` cookie (HttpOnly,
SameSite=Lax, Secure under HTTPS). A POST passes when the signature is good, the
form is not older than its limit, and the cookie holds the same nonce.

Browsers withhold cookies from a form inside another site's iframe; there the
signed token alone passes only if the request's Origin is drip's own (OWASP:
verifying origin with standard headers; a forging site cannot set that header).

The one-click unsubscribe POST is exempt by design (RFC 8058): its URL token is
the authority. The signup snippet posted from the clinic's own site is handled in
routes.py (allowed origins, else the form is shown again to submit on drip).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

COOKIE = "drip_csrf"
FIELD = "csrf_token"
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{20,64}$")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


class Csrf:
    def __init__(self, secret: str, max_age: int):
        self._signer = URLSafeTimedSerializer(secret, salt="drip.csrf")
        self.max_age = max_age

    @staticmethod
    def nonce_from(cookie: str | None) -> str | None:
        return cookie if cookie and _NONCE.match(cookie) else None

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def token(self, nonce: str) -> str:
        return str(self._signer.dumps(nonce))

    def check(self, token: str | None, cookie: str | None, own_origin: bool) -> Verdict:
        """Is this POST from a form drip served, in this browser, recently?"""
        if not token or len(token) > 200:
            return Verdict(False, "missing")
        try:
            nonce = self._signer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            return Verdict(False, "expired")
        except BadData:
            return Verdict(False, "forged")
        if not isinstance(nonce, str):
            return Verdict(False, "forged")
        cookie_nonce = self.nonce_from(cookie)
        if cookie_nonce is not None:
            same = hmac.compare_digest(cookie_nonce.encode(), nonce.encode())
            return Verdict(True) if same else Verdict(False, "cookie mismatch")
        return Verdict(True) if own_origin else Verdict(False, "no cookie")
