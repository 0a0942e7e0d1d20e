"""List cursors: opaque, URL-safe, and refused when they are not ours."""

from __future__ import annotations

import base64
import json
import re

import pytest

from shared.cursors import decode_runs_cursor as decode_cursor
from shared.cursors import encode_runs_cursor as encode_cursor
from shared.ids import new_run_id

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("run_id", [
    "01JGXYZABCDEFGHJKMNPQRSTVW",
    "00000000000000000000000000",
    "7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
])
def test_round_trip(run_id: str) -> None:
    cursor = encode_cursor(run_id)
    assert decode_cursor(cursor) == run_id
    assert URL_SAFE.match(cursor)
    assert run_id not in cursor  # opaque


def test_round_trip_of_fresh_ids() -> None:
    for _ in range(500):
        run_id = new_run_id()
        cursor = encode_cursor(run_id)
        assert "=" not in cursor
        assert URL_SAFE.match(cursor)
        assert decode_cursor(cursor) == run_id


def test_the_cursor_is_base64url_json_naming_the_run_it_points_before() -> None:
    run_id = new_run_id()
    cursor = encode_cursor(run_id)
    assert json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))) == {
        "before": run_id,
    }


def test_a_padded_cursor_is_accepted_too() -> None:
    run_id = new_run_id()
    padded = base64.urlsafe_b64encode(json.dumps({"before": run_id}).encode()).decode()
    assert padded.endswith("=")
    assert decode_cursor(padded) == run_id


def test_different_runs_give_different_cursors() -> None:
    cursors = {encode_cursor(new_run_id()) for _ in range(100)}
    assert len(cursors) == 100


RUN_ID = "01JGXYZABCDEFGHJKMNPQRSTVW"


@pytest.mark.parametrize("cursor", [
    "",
    "garbage",
    "!!!!",
    "%%%%",
    "not a cursor",
    "é",
    "\x00",
    RUN_ID,  # a bare run id is not a cursor
    b64(b"foo"),  # base64 of something that is not JSON
    b64(b"\xff\xfe\xfd"),  # base64 of bytes that are not even UTF-8
    b64(b"{\"before\": "),  # truncated JSON
    b64(b"[\"01JGXYZABCDEFGHJKMNPQRSTVW\"]"),  # JSON, not an object
    b64(b"42"),
    b64(b"\"01JGXYZABCDEFGHJKMNPQRSTVW\""),
    b64(b"null"),
    b64(json.dumps({}).encode()),  # JSON without "before"
    b64(json.dumps({"after": RUN_ID}).encode()),
    b64(json.dumps({"before": 123}).encode()),
    b64(json.dumps({"before": None}).encode()),
    b64(json.dumps({"before": [RUN_ID]}).encode()),
    b64(json.dumps({"before": RUN_ID[:-1]}).encode()),  # 25 characters
    b64(json.dumps({"before": RUN_ID + "A"}).encode()),  # 27 characters
    b64(json.dumps({"before": ""}).encode()),
    encode_cursor(RUN_ID)[:-4],  # cut short
])
def test_what_is_not_our_cursor_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor from this API"):
        decode_cursor(cursor)
