"""Webhook signatures: what we sign, a Standard Webhooks library verifies (the
`standardwebhooks` package, not our own code), rotation included."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.webhooks import signing
from shared.webhooks.signing import SecretError

BODY = json.dumps({"type": "run.completed", "timestamp": "2026-03-28T10:30:07.310Z",
                   "data": {"runId": "01J0000000000000000000000A", "status": "COMPLETED",
                            "note": "héllo ✓"}},
                  separators=(",", ":"), ensure_ascii=False).encode()
EVENT_ID = "01J0000000000000000000000B"


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    made = {signing.new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(signing.secret_key(secret)) == 32


def test_the_library_verifies_our_signature() -> None:
    secret = signing.new_secret()
    headers = signing.sign_headers([secret], EVENT_ID, int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == EVENT_ID
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_the_signature_is_the_documented_hmac() -> None:
    secret = signing.new_secret()
    signed_at = datetime.fromtimestamp(1_700_000_000, UTC)
    expected = Webhook(secret).sign(EVENT_ID, signed_at, BODY.decode())
    assert signing.signature(secret, EVENT_ID, 1_700_000_000, BODY) == expected


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.sign_headers([old, new], EVENT_ID, int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp"])
def test_a_changed_delivery_does_not_verify(tamper: str) -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.sign_headers([secret], EVENT_ID, now, BODY)
    body = BODY
    if tamper == "body":
        body = BODY.replace(b"COMPLETED", b"FAILED")
    elif tamper == "id":
        headers["webhook-id"] = EVENT_ID[:-1] + "C"
    else:
        headers["webhook-timestamp"] = str(now - 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    assert not signing.verify([secret], headers, body, now=now)


def test_our_verify_agrees_and_checks_the_timestamp() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    headers = signing.sign_headers([secret], EVENT_ID, now, BODY)
    assert signing.verify([signing.new_secret(), secret], headers, BODY, now=now)
    assert not signing.verify([secret], headers, BODY, now=now + 301)
    assert not signing.verify([secret], {**headers, "webhook-signature": "v2,abc"}, BODY,
                              now=now)
    assert not signing.verify([secret], {}, BODY, now=now)


def test_a_secret_made_elsewhere_is_accepted() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    headers = signing.sign_headers([secret], EVENT_ID, int(time.time()), BODY)
    Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize("secret", [
    "", "whsec_", "k" * 44, "whsec_not base64!", "whsec_" + base64.b64encode(b"short").decode(),
    "whsec_" + base64.b64encode(b"x" * 65).decode(),
])
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(SecretError):
        signing.secret_key(secret)


@pytest.mark.parametrize("msg_id", ["", "a.b", "a\nb"])
def test_ids_that_would_make_the_signed_content_ambiguous_are_refused(msg_id: str) -> None:
    with pytest.raises(ValueError):
        signing.sign_headers([signing.new_secret()], msg_id, 1, BODY)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(SecretError):
        signing.sign_headers([], EVENT_ID, 1, BODY)
