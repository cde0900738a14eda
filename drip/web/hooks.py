"""POST /hooks/bounces/<provider>: bounces and complaints from sending providers.

Providers:
- ses: Amazon SES notifications, delivered by SNS (the SNS envelope, or raw
  message delivery). Authenticated by DRIP_HOOK_SECRET, given as ?secret=, the
  X-Drip-Hook-Secret header or the password of HTTP basic auth (SNS supports
  https://user:SECRET@host/... endpoint URLs). drip does not verify SNS's own
  message signature (that needs fetching AWS's signing certificate); the secret
  in the URL, over HTTPS, is what proves the caller knows the endpoint.
  A SubscriptionConfirmation is logged with its SubscribeURL for the operator to
  open once; drip never fetches URLs from a request.
- mailgun: Mailgun webhooks (failed, complained), authenticated by Mailgun's
  signature: HMAC-SHA256 of timestamp + token with DRIP_MAILGUN_SIGNING_KEY.
- generic: drip's own JSON shape (README), authenticated by DRIP_HOOK_SECRET.

Every secret is compared in constant time. The parsers are pure functions; the
decisions are drip/feedback.py's, the same as for returned mail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from ..feedback import (
    COMPLAINT,
    DELAYED,
    HARD,
    IGNORED,
    SOFT,
    Report,
    apply,
    classify_status,
)
from ..settings import Settings
from .services import Services

log = logging.getLogger("drip.web")
bp = Blueprint("hooks", __name__)
MAX_BODY = 1024 * 1024  # SES notifications carry the original headers
REF = re.compile(r"^<?([0-9a-f]{32})@", re.I)
VERP = re.compile(r"\+([0-9a-f]{32})@", re.I)
STATUS = re.compile(r"\b([45]\.\d{1,3}\.\d{1,3})\b")


class BadPayload(ValueError):
    """The body is not what this provider sends; the message says what is wrong."""


@bp.record_once
def _keys(state: Any) -> None:
    settings = Settings.from_env()
    state.app.extensions.setdefault(
        "drip.hooks", {"secret": settings.hook_secret, "mailgun": settings.mailgun_signing_key}
    )


@bp.before_request
def _allow_larger_bodies() -> None:
    request.max_content_length = MAX_BODY


@bp.post("/hooks/bounces/<provider>")
def bounces(provider: str) -> tuple[Response, int]:
    keys: dict[str, str | None] = current_app.extensions["drip.hooks"]
    if provider not in PARSERS:
        return _answer(404, f"unknown provider {provider!r}; use one of {', '.join(PARSERS)}")
    if provider == "mailgun":
        if not keys["mailgun"]:
            return _answer(404, "set DRIP_MAILGUN_SIGNING_KEY to accept Mailgun webhooks")
    elif not keys["secret"]:
        return _answer(404, "set DRIP_HOOK_SECRET to accept bounce webhooks")
    elif not _secret_ok(keys["secret"]):
        log.warning("bounce webhook %s: wrong or missing secret", provider)
        return _answer(403, "wrong or missing secret")
    try:
        body = json.loads(request.get_data(cache=False) or b"null")
        if provider == "mailgun" and not mailgun_signature_ok(body, keys["mailgun"] or ""):
            log.warning("bounce webhook mailgun: bad signature")
            return _answer(403, "bad signature")
        reports = PARSERS[provider](body)
    except (ValueError, BadPayload) as exc:  # json.JSONDecodeError is a ValueError
        log.warning("bounce webhook %s: %s", provider, exc)
        return _answer(400, f"not a {provider} notification: {exc}")
    services: Services = current_app.extensions["drip"]
    now, actor = services.now(), f"webhook {provider}"
    with Session(services.engine, expire_on_commit=False) as session:
        outcomes = [apply(session, services.config, r, now, actor) for r in reports]
        session.commit()
    for outcome in outcomes:
        (log.warning if outcome.warning else log.info)("bounce webhook: %s", outcome.line)
    return jsonify(processed=len(outcomes), outcomes=[o.action for o in outcomes]), 200


def _answer(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message) if status >= 400 else jsonify(ok=message), status


def _secret_ok(secret: str) -> bool:
    given = (
        request.args.get("secret")
        or request.headers.get("X-Drip-Hook-Secret")
        or (request.authorization.password if request.authorization else None)
        or ""
    )
    return hmac.compare_digest(given.encode(), secret.encode())


# -- parsers: provider JSON -> Reports (pure) ---------------------------------------------


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(f"{what} must be a JSON object")
    return value


def _refs(*values: Any) -> tuple[str, ...]:
    found = []
    for value in values:
        if isinstance(value, str):
            match = REF.match(value.strip()) or VERP.search(value)
            if match:
                found.append(match.group(1).lower())
            elif re.fullmatch(r"[0-9a-f]{32}", value.strip(), re.I):
                found.append(value.strip().lower())
    return tuple(dict.fromkeys(found))


def parse_ses(body: Any) -> list[Report]:
    """An SNS envelope around an SES notification, or the notification itself."""
    body = _obj(body, "the body")
    kind = body.get("Type")
    if kind == "SubscriptionConfirmation":
        url = str(body.get("SubscribeURL", ""))
        log.warning(
            "SNS asks to confirm the subscription of %s; open this URL once to confirm: %s",
            body.get("TopicArn", "?"),
            url if url.startswith("https://sns.") else "(missing or not an SNS URL)",
        )
        return []
    if kind == "UnsubscribeConfirmation":
        return []
    if kind == "Notification":
        try:
            body = _obj(json.loads(str(body.get("Message", ""))), "Message")
        except ValueError:
            raise BadPayload("the SNS Message is not JSON") from None
    event = body.get("notificationType") or body.get("eventType")
    mail = _obj(body.get("mail", {}), "mail")
    headers = {
        str(h.get("name", "")).lower(): h.get("value")
        for h in mail.get("headers", [])
        if isinstance(h, dict)
    }
    common = _obj(mail.get("commonHeaders", {}), "mail.commonHeaders")
    refs = _refs(headers.get("x-drip-ref"), common.get("messageId"), mail.get("source"))
    if event == "Bounce":
        bounce = _obj(body.get("bounce"), "bounce")
        permanent = bounce.get("bounceType") == "Permanent"
        reports = []
        for r in bounce.get("bouncedRecipients", []):
            r = _obj(r, "bouncedRecipients[]")
            status = str(r.get("status", "")).strip()
            kind_ = classify_status(status) if status else (HARD if permanent else SOFT)
            if not permanent and kind_ == HARD:
                kind_ = SOFT  # SES says it may yet work: never suppress on a transient
            reports.append(
                Report(
                    kind=kind_,
                    source="ses",
                    report_id=str(bounce.get("feedbackId", "")),
                    email=str(r.get("emailAddress", "")).lower() or None,
                    refs=refs,
                    status=status,
                    detail=str(r.get("diagnosticCode", bounce.get("bounceSubType", "")))[:300],
                )
            )
        return reports
    if event == "Complaint":
        complaint = _obj(body.get("complaint"), "complaint")
        feedback = str(complaint.get("complaintFeedbackType", "abuse")).lower()
        return [
            Report(
                kind=IGNORED if feedback == "not-spam" else COMPLAINT,
                source="ses",
                report_id=str(complaint.get("feedbackId", "")),
                email=str(_obj(r, "complainedRecipients[]").get("emailAddress", "")).lower()
                or None,
                refs=refs,
                detail=f"feedback-type {feedback}",
            )
            for r in complaint.get("complainedRecipients", [])
        ]
    if event == "DeliveryDelay":
        delay = _obj(body.get("deliveryDelay"), "deliveryDelay")
        return [
            Report(
                kind=DELAYED,
                source="ses",
                report_id=str(mail.get("messageId", "")) + ":delay",
                email=str(_obj(r, "delayedRecipients[]").get("emailAddress", "")).lower() or None,
                refs=refs,
                status=str(r.get("status", "")),
                detail=str(delay.get("delayType", "")),
            )
            for r in delay.get("delayedRecipients", [])
        ]
    if event in ("Delivery", "Send", "Open", "Click", "Reject", "Rendering Failure"):
        return []  # not a bounce or complaint
    raise BadPayload(f"unknown notification type {event!r}")


def mailgun_signature_ok(body: Any, key: str) -> bool:
    """Mailgun: signature = HMAC-SHA256(signing key, timestamp + token), hex."""
    if not isinstance(body, dict) or not isinstance(body.get("signature"), dict):
        return False
    sig = body["signature"]
    message = f"{sig.get('timestamp', '')}{sig.get('token', '')}".encode()
    expected = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, str(sig.get("signature", "")))


def parse_mailgun(body: Any) -> list[Report]:
    event = _obj(_obj(body, "the body").get("event-data"), "event-data")
    name = event.get("event")
    headers = _obj(_obj(event.get("message", {}), "message").get("headers", {}), "headers")
    envelope = _obj(event.get("envelope", {}), "envelope")
    refs = _refs(headers.get("message-id"), envelope.get("sender"))
    base: dict[str, Any] = {
        "source": "mailgun",
        "report_id": str(event.get("id", "")),
        "email": str(event.get("recipient", "")).lower() or None,
        "refs": refs,
    }
    if name == "complained":
        return [Report(kind=COMPLAINT, detail="complained", **base)]
    if name != "failed":
        return []  # delivered, opened, ...: nothing to decide
    status_info = _obj(event.get("delivery-status", {}), "delivery-status")
    text = f"{status_info.get('message', '')} {status_info.get('description', '')}".strip()
    match = STATUS.search(str(status_info.get("enhanced-code", "")) or text)
    status = match.group(1) if match else ""
    if event.get("severity") == "permanent":
        kind = classify_status(status) if status else HARD
    else:
        kind = DELAYED if status_info.get("retry-seconds") else SOFT
    return [Report(kind=kind, status=status, detail=" ".join(text.split())[:300], **base)]


GENERIC_TYPES = {
    "bounce": None,  # hard or soft from bounce_type or status
    "complaint": COMPLAINT,
    "delay": DELAYED,
}


def parse_generic(body: Any) -> list[Report]:
    """drip's documented shape: one event object, a list of them, or {"events": [...]}."""
    if isinstance(body, dict) and "events" in body:
        body = body["events"]
    events = body if isinstance(body, list) else [body]
    reports = []
    for i, raw in enumerate(events):
        event = _obj(raw, f"event {i}")
        kind_name = str(event.get("type", "")).lower()
        if kind_name not in GENERIC_TYPES:
            raise BadPayload(f'event {i}: "type" must be bounce, complaint or delay')
        status = str(event.get("status", "")).strip()
        if status and not STATUS.fullmatch(status):
            raise BadPayload(f'event {i}: "status" must be a code like 5.1.1')
        email = str(event.get("email", "")).strip().lower() or None
        refs = _refs(event.get("ref"), event.get("message_id"))
        if not email and not refs:
            raise BadPayload(f'event {i}: needs "email", "ref" or "message_id"')
        kind = GENERIC_TYPES[kind_name]
        if kind is None:
            bounce_type = str(event.get("bounce_type", "")).lower()
            if bounce_type not in ("", "hard", "soft"):
                raise BadPayload(f'event {i}: "bounce_type" must be hard or soft')
            kind = classify_status(status) if status else (HARD if bounce_type == "hard" else SOFT)
            if bounce_type == "soft" and kind == HARD:
                kind = SOFT
        reports.append(
            Report(
                kind=kind,
                source="generic",
                report_id=str(event.get("id", "")) or f"{kind_name}:{email}:{','.join(refs)}",
                email=email,
                refs=refs,
                status=status,
                detail=str(event.get("diagnostic", ""))[:300],
            )
        )
    return reports


PARSERS = {"ses": parse_ses, "mailgun": parse_mailgun, "generic": parse_generic}
