"""POST /hooks/bounces/<provider>: SES (SNS), Mailgun (HMAC), generic JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest
from deliver_helpers import audit, refs, send_to, status
from mailsink import free_port
from test_web_browser import wait_until_up
from web_fixtures import make_web, web_project

SECRET = "hook-secret-0123456789"
MAILGUN_KEY = "key-mailgun-signing"


@pytest.fixture
def hooked(tmp_path, sink, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DRIP_HOOK_SECRET", SECRET)
    monkeypatch.setenv("DRIP_MAILGUN_SIGNING_KEY", MAILGUN_KEY)
    project = web_project(tmp_path / "p", sink)
    send_to(project, "pat@example.org", "ann@example.org")
    return make_web(project, sink)


def ses_bounce(ref: str, email: str, bounce_type="Permanent", status="5.1.1"):  # type: ignore[no-untyped-def]
    message = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "feedbackId": f"fb-{ref[:8]}-{status}",
            "bouncedRecipients": [
                {"emailAddress": email, "status": status, "diagnosticCode": f"smtp; 550 {status}"}
            ],
        },
        "mail": {
            "messageId": "0100018f-ses-id",
            "source": "care@clinic.test",
            "headers": [{"name": "X-Drip-Ref", "value": ref}],
            "commonHeaders": {"messageId": f"<{ref}@clinic.test>"},
        },
    }
    return {"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(message)}


def ses_complaint(ref: str, email: str):  # type: ignore[no-untyped-def]
    message = {
        "notificationType": "Complaint",
        "complaint": {
            "feedbackId": "fb-complaint-1",
            "complaintFeedbackType": "abuse",
            "complainedRecipients": [{"emailAddress": email}],
        },
        "mail": {"commonHeaders": {"messageId": f"<{ref}@clinic.test>"}},
    }
    return {"Type": "Notification", "Message": json.dumps(message)}


def test_ses_bounce_and_complaint_with_the_secret(hooked):
    web = hooked
    pat, ann = refs(web.project, "pat@example.org")[0], refs(web.project, "ann@example.org")[0]
    url = f"/hooks/bounces/ses?secret={SECRET}"
    answer = web.client.post(url, json=ses_bounce(pat, "pat@example.org"))
    assert answer.status_code == 200 and answer.json == {"processed": 1, "outcomes": ["bounced"]}
    assert status(web.project, "pat@example.org") == "bounced"
    again = web.client.post(url, json=ses_bounce(pat, "pat@example.org"))
    assert again.json["outcomes"] == ["duplicate"]

    answer = web.client.post(
        "/hooks/bounces/ses",
        json=ses_complaint(ann, "ann@example.org"),
        headers={"X-Drip-Hook-Secret": SECRET},
    )
    assert answer.json["outcomes"] == ["complained"]
    assert status(web.project, "ann@example.org") == "complained"
    actors = {a: d["source"] for a, d in audit(web.project) if a in ("bounce.hard", "complaint")}
    assert actors == {"bounce.hard": "ses", "complaint": "ses"}


def test_ses_transient_and_policy_keep_the_patient(hooked):
    web = hooked
    pat = refs(web.project, "pat@example.org")[0]
    url = f"/hooks/bounces/ses?secret={SECRET}"
    soft = web.client.post(url, json=ses_bounce(pat, "pat@example.org", "Transient", "5.1.1"))
    policy = web.client.post(url, json=ses_bounce(pat, "pat@example.org", "Permanent", "5.7.1"))
    assert soft.json["outcomes"] == ["soft"] and policy.json["outcomes"] == ["policy"]
    assert status(web.project, "pat@example.org") == "active"


def test_wrong_or_missing_secret_is_refused_and_changes_nothing(hooked):
    web = hooked
    pat = refs(web.project, "pat@example.org")[0]
    for url in ("/hooks/bounces/ses", "/hooks/bounces/ses?secret=wrong", "/hooks/bounces/generic"):
        answer = web.client.post(url, json=ses_bounce(pat, "pat@example.org"))
        assert answer.status_code == 403 and answer.json == {"error": "wrong or missing secret"}
    assert status(web.project, "pat@example.org") == "active"
    assert web.client.post(f"/hooks/bounces/nope?secret={SECRET}", json={}).status_code == 404


def test_bad_bodies_get_one_clear_line(hooked):
    web = hooked
    url = f"/hooks/bounces/generic?secret={SECRET}"
    cases = {
        b"{not json": "not a generic notification: Expecting property name",
        b'{"type": "bounce"}': 'needs "email", "ref" or "message_id"',
        b'{"type": "party", "email": "a@b.example"}': '"type" must be bounce, complaint or delay',
        b'[{"type": "bounce", "email": "a@b.example", "status": "bad"}]': "a code like 5.1.1",
    }
    for body, message in cases.items():
        answer = web.client.post(url, data=body, content_type="application/json")
        assert answer.status_code == 400 and message in answer.json["error"], answer.json
    ses = web.client.post(
        f"/hooks/bounces/ses?secret={SECRET}", json={"Type": "Notification", "Message": "{{"}
    )
    assert ses.status_code == 400 and "the SNS Message is not JSON" in ses.json["error"]


def test_sns_subscription_confirmation_is_logged_not_fetched(hooked, caplog):
    web = hooked
    body = {
        "Type": "SubscriptionConfirmation",
        "TopicArn": "arn:aws:sns:us-east-1:123:bounces",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&T=x",
    }
    with caplog.at_level("WARNING", logger="drip.web"):
        answer = web.client.post(f"/hooks/bounces/ses?secret={SECRET}", json=body)
    assert answer.status_code == 200 and answer.json["processed"] == 0
    assert "open this URL once to confirm: https://sns.us-east-1.amazonaws.com/" in caplog.text


def mailgun(event: dict, key: str = MAILGUN_KEY) -> dict:  # type: ignore[type-arg]
    timestamp, token = "1780326000", "a" * 50
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def test_mailgun_signed_events(hooked):
    web = hooked
    pat, ann = refs(web.project, "pat@example.org")[0], refs(web.project, "ann@example.org")[0]
    failed = {
        "id": "mg-1",
        "event": "failed",
        "severity": "permanent",
        "recipient": "pat@example.org",
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        "message": {"headers": {"message-id": f"{pat}@clinic.test"}},
    }
    answer = web.client.post("/hooks/bounces/mailgun", json=mailgun(failed))
    assert answer.json["outcomes"] == ["bounced"]
    complained = {
        "id": "mg-2",
        "event": "complained",
        "recipient": "ann@example.org",
        "message": {"headers": {"message-id": f"{ann}@clinic.test"}},
    }
    forged = web.client.post("/hooks/bounces/mailgun", json=mailgun(complained, "other-key"))
    assert forged.status_code == 403 and status(web.project, "ann@example.org") == "active"
    answer = web.client.post("/hooks/bounces/mailgun", json=mailgun(complained))
    assert answer.json["outcomes"] == ["complained"]
    assert status(web.project, "ann@example.org") == "complained"


def test_generic_events_list(hooked):
    web = hooked
    pat = refs(web.project, "pat@example.org")[0]
    events = {
        "events": [
            {"type": "delay", "ref": pat, "id": "g-1"},
            {"type": "bounce", "email": "ann@example.org", "bounce_type": "hard", "id": "g-2"},
            {"type": "complaint", "email": "nobody@example.net", "id": "g-3"},
        ]
    }
    answer = web.client.post(f"/hooks/bounces/generic?secret={SECRET}", json=events)
    assert answer.json["outcomes"] == ["delayed", "bounced", "unmatched"]
    assert status(web.project, "pat@example.org") == "active"
    assert status(web.project, "ann@example.org") == "bounced"


def test_hooks_off_without_secrets(tmp_path, sink, monkeypatch):
    monkeypatch.delenv("DRIP_HOOK_SECRET", raising=False)
    monkeypatch.delenv("DRIP_MAILGUN_SIGNING_KEY", raising=False)
    web = make_web(web_project(tmp_path / "p", sink), sink)
    assert web.client.post("/hooks/bounces/ses?secret=", json={}).status_code == 404
    assert web.client.post("/hooks/bounces/mailgun", json={}).status_code == 404


def test_drip_serve_takes_an_ses_notification(tmp_path, sink):
    project = web_project(tmp_path / "p", sink)
    send_to(project, "pat@example.org")
    pat = refs(project, "pat@example.org")[0]
    project.env["DRIP_HOOK_SECRET"] = SECRET
    port = free_port()
    proc = project.popen("serve", "--port", str(port))
    try:
        wait_until_up(f"http://127.0.0.1:{port}", proc)
        body = json.dumps(ses_bounce(pat, "pat@example.org")).encode()
        url = f"http://127.0.0.1:{port}/hooks/bounces/ses"
        request = urllib.request.Request(url + "?secret=nope", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 403
        request = urllib.request.Request(url + f"?secret={SECRET}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer) == {"processed": 1, "outcomes": ["bounced"]}
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert status(project, "pat@example.org") == "bounced"
