"""Standard Webhooks signatures (https://www.standardwebhooks.com), so that a receiver
verifies our deliveries with any of its libraries.

A delivery carries three headers: `webhook-id` (the event's ID, the same on every
retry, for the receiver to drop duplicates), `webhook-timestamp` (whole seconds since
the epoch, when this try was signed) and `webhook-signature`: `v1,<base64 HMAC-SHA256
of "<id>.<timestamp>.<body>">`. A secret is `whsec_<base64 of its key>`. While a
secret is rotated both the old and the new sign, their signatures separated by a
space: a receiver that knows either accepts the delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Iterable, Mapping, Sequence

PREFIX = "whsec_"
KEY_BYTES = 32  # what new secrets hold (the scheme allows 24 to 64)
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
VERSION = "v1"
TOLERANCE_SECONDS = 300  # how far a timestamp may be from now when verified

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class SecretError(ValueError):
    """A secret that is not `whsec_` and the base64 of 24 to 64 bytes."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(_random.token_bytes(KEY_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key a `whsec_...` secret holds."""
    if not secret.startswith(PREFIX):
        raise SecretError("a webhook secret starts with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("a webhook secret is whsec_ and base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SecretError(f"a webhook secret holds {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes")
    return key


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64>`: one secret's signature of a delivery."""
    digest = hmac.new(secret_key(secret), _signed_content(msg_id, timestamp, body),
                      hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Every secret's signature, space-separated (several while a secret is rotated)."""
    if not secrets:
        raise SecretError("a delivery is signed with at least one secret")
    if "." in msg_id or not msg_id.isprintable() or not msg_id:
        raise ValueError("a webhook ID is printable, not empty, and holds no dot")
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets)


def sign_headers(secrets: Sequence[str], msg_id: str, timestamp: int,
                 body: bytes) -> dict[str, str]:
    """The three headers of a delivery of `body`, signed at `timestamp` (whole seconds
    since the epoch)."""
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(int(timestamp)),
            SIGNATURE_HEADER: signature_header(secrets, msg_id, int(timestamp), body)}


def verify(secrets: Iterable[str], headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance_seconds: int = TOLERANCE_SECONDS) -> bool:
    """Whether a delivery is signed by one of `secrets` and its timestamp is within
    `tolerance_seconds` of `now` (what a receiver checks; our tests verify with the
    `standardwebhooks` library instead)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(ID_HEADER, "")
    raw_timestamp = lowered.get(TIMESTAMP_HEADER, "")
    if not msg_id or not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        return False
    timestamp = int(raw_timestamp)
    if abs(now - timestamp) > tolerance_seconds:
        return False
    offered = []
    for part in lowered.get(SIGNATURE_HEADER, "").split(" "):
        version, _, sig = part.partition(",")
        if version == VERSION and sig:
            offered.append(sig)
    for secret in secrets:
        expected = signature(secret, msg_id, timestamp, body).partition(",")[2]
        if any(hmac.compare_digest(expected, sig) for sig in offered):
            return True
    return False
