"""The README's webhook receiver works as written: it accepts a delivery signed the
Standard Webhooks way (signed here with the `standardwebhooks` library itself, not
with our own code), with one signature or two during a rotation, drops a retry of an
event it handled, and refuses a bad signature or a stale one."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[2]
OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
EVENT_ID = "01JH0EVENT0000000000000000"
BODY = json.dumps({"type": "run.completed", "timestamp": "2026-03-28T10:30:02.000Z",
                   "data": {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "status": "COMPLETED",
                            "itemsUrl": "/v1/runs/01JGXYZABCDEFGHJKMNPQRSTVW/items"}})


def receiver_source() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- webhook-receiver:start -->\n```python\n(.*?)```\n"
                      r"<!-- webhook-receiver:end -->", readme, re.S)
    assert block, "the README has no webhook receiver"
    return block.group(1)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MONID_WEBHOOK_SECRET", NEW)
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(receiver_source(), "README.md", "exec"), namespace)
    assert os.environ["MONID_WEBHOOK_SECRET"] == NEW
    return namespace["app"].test_client()


def headers(*secrets: str, at: float | None = None, msg_id: str = EVENT_ID) -> dict[str, str]:
    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, when, BODY) for s in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signatures, "Content-Type": "application/json"}


def test_a_signed_delivery_is_taken_once(receiver: Any) -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        first = receiver.post("/hooks/monid", data=BODY, headers=headers(NEW))
        retry = receiver.post("/hooks/monid", data=BODY, headers=headers(NEW))
    assert (first.status_code, retry.status_code) == (204, 204)
    assert printed.getvalue().count(" ended; ") == 1


def test_during_a_rotation_either_secret_is_enough(receiver: Any) -> None:
    answer = receiver.post("/hooks/monid", data=BODY, headers=headers(NEW, OLD))
    assert answer.status_code == 204


@pytest.mark.parametrize("signed", [
    headers(OLD),  # only the secret it no longer knows
    {**headers(NEW), "webhook-id": "01JH0EVENT0000000000000001"},  # another event's ID
    headers(NEW, at=time.time() - 3600),  # an hour old: replayed
])
def test_a_bad_or_stale_signature_is_refused(receiver: Any, signed: dict[str, str]) -> None:
    assert receiver.post("/hooks/monid", data=BODY, headers=signed).status_code == 400


def test_a_changed_body_is_refused(receiver: Any) -> None:
    changed = BODY.replace("COMPLETED", "FAILED")
    assert receiver.post("/hooks/monid", data=changed, headers=headers(NEW)).status_code == 400
