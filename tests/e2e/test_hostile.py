"""Hostile clients against a real gunicorn web process: clear 4xx answers in the
contract's envelope, never a 5xx, and nothing stored."""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from psycopg_pool import ConnectionPool

from shared.db import transaction
from tests.helpers import KeyMaker
from tests.processes import Process

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def hostile_key(pool: ConnectionPool) -> str:
    return KeyMaker(pool)("user_hostile")


def runs_of(pool: ConnectionPool) -> int:
    with transaction(pool) as conn:
        row = conn.execute("SELECT count(*) AS n FROM runs WHERE caller = 'USER#user_hostile'"
                           ).fetchone()
    return int(row["n"]) if row else 0


def envelope(answer: requests.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.text[:300])
    body: dict[str, Any] = answer.json()
    assert body["code"] == status and isinstance(body["message"], str)
    assert body["errorCode"].isupper()
    assert answer.headers.get("x-request-id")
    return body


def post(base: str, key: str, data: bytes | Any, **headers: str) -> requests.Response:
    return requests.post(f"{base}/v1/run", data=data, timeout=30,
                         headers={"Authorization": f"Bearer {key}",
                                  "Content-Type": "application/json", **headers})


def test_a_body_over_the_limit_is_413(web: tuple[Process, str], hostile_key: str,
                                      pool: ConnectionPool) -> None:
    body = json.dumps({"provider": "demo", "endpoint": "/echo",
                       "input": {"blob": "x" * (LIMIT + 10)}}).encode()
    assert envelope(post(web[1], hostile_key, body), 413)["errorCode"] == "PAYLOAD_TOO_LARGE"
    assert runs_of(pool) == 0


def test_a_chunked_body_over_the_limit_is_413(web: tuple[Process, str], hostile_key: str,
                                              pool: ConnectionPool) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"provider": "demo", "endpoint": "/echo", "input": {"blob": "'
        for _ in range(LIMIT // 4096 + 10):
            yield b"x" * 4096
        yield b'"}}'

    assert envelope(post(web[1], hostile_key, chunks()), 413)["errorCode"] == "PAYLOAD_TOO_LARGE"
    assert runs_of(pool) == 0


def test_a_chunked_body_whose_json_ends_before_the_limit_is_413_too(
        web: tuple[Process, str], hostile_key: str, pool: ConnectionPool) -> None:
    # Valid JSON well within the limit, then padding past it: cutting the body at the
    # limit would leave a valid request, so nothing but the whole body's size can tell.
    def chunks() -> Iterator[bytes]:
        yield b'{"provider": "demo", "endpoint": "/echo", "input": {"a": 1}}'
        for _ in range(LIMIT // 4096 + 2):
            yield b" " * 4096

    assert envelope(post(web[1], hostile_key, chunks()), 413)["errorCode"] == "PAYLOAD_TOO_LARGE"
    assert runs_of(pool) == 0


def test_a_chunked_body_within_the_limit_is_read_whole(web: tuple[Process, str],
                                                       pool: ConnectionPool) -> None:
    key = KeyMaker(pool)("user_chunked")  # a caller of its own: this run is stored
    blob = "y" * (LIMIT - 1000)

    def chunks() -> Iterator[bytes]:
        yield b'{"provider": "demo", "endpoint": "/echo", "input": {"blob": "'
        for start in range(0, len(blob), 4096):
            yield blob[start:start + 4096].encode()
        yield b'"}}'

    answer = post(web[1], key, chunks())
    assert answer.status_code == 202, answer.text
    with transaction(pool) as conn:
        row = conn.execute("SELECT input FROM runs WHERE id = %s",
                           (answer.json()["runId"],)).fetchone()
    assert row is not None and row["input"] == {"blob": blob}


@pytest.mark.parametrize(("name", "body"), [
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ("deep object", b'{"a":' * 30_000 + b"1" + b"}" * 30_000),
    ("huge array", b"[" + b"1," * 100_000 + b"1]"),
    ("not UTF-8", b'{"provider": "\xff\xfe", "endpoint": "/echo", "input": {}}'),
    ("NaN", b'{"provider": "demo", "endpoint": "/echo", "input": {"a": NaN}}'),
    ("lone surrogate", b'{"provider": "demo", "endpoint": "/echo", "input": {"a": "\\ud800"}}'),
    ("trailing garbage", b'{"provider": "demo", "endpoint": "/echo", "input": {}} x'),
    ("empty", b""),
    ("huge number", b'{"provider": "demo", "endpoint": "/echo", "input": {"a": 1e999}}'),
    ("long digits", b'{"provider": "demo", "endpoint": "/echo", "input": {"a": ' + b"9" * 5000
     + b"}}"),
])
def test_malformed_json_is_400(web: tuple[Process, str], hostile_key: str,
                               pool: ConnectionPool, name: str, body: bytes) -> None:
    assert envelope(post(web[1], hostile_key, body), 400)["errorCode"] == "VALIDATION_FAILED"
    assert runs_of(pool) == 0


@pytest.mark.parametrize("body", [
    {"provider": 1, "endpoint": "/echo", "input": {}},
    {"provider": "demo", "endpoint": ["/echo"], "input": {}},
    {"provider": "demo", "endpoint": "/echo", "input": "text"},
    {"provider": None, "endpoint": None, "input": None},
    {"provider": "demo", "endpoint": "/echo", "input": [1, 2]},
    {"provider": {"$ne": 1}, "endpoint": "/echo", "input": {}},
    {"provider": "demo", "endpoint": "/echo", "input": {}, "extra": True},
    {"provider": "d" * 10_000, "endpoint": "/echo", "input": {}},
])
def test_wrong_types_everywhere_are_400(web: tuple[Process, str], hostile_key: str,
                                        pool: ConnectionPool, body: dict[str, Any]) -> None:
    answer = envelope(post(web[1], hostile_key, json.dumps(body).encode()), 400)
    assert answer["errors"], answer
    assert runs_of(pool) == 0


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer " + "a" * 7000},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer monid_live_ÄÖÜ"},
    {"Authorization": ""},
])
def test_abusive_auth_headers_are_401(web: tuple[Process, str], pool: ConnectionPool,
                                      headers: dict[str, str]) -> None:
    answer = requests.get(f"{web[1]}/v1/runs", timeout=10,
                          headers={k: v.encode("utf-8").decode("latin-1")
                                   for k, v in headers.items()})
    envelope(answer, 401)


def test_a_header_with_control_characters_is_400_in_the_envelope(
        web: tuple[Process, str]) -> None:
    # gunicorn itself refuses such a request, before the app; its answer is the envelope.
    answer = requests.get(f"{web[1]}/v1/runs", timeout=10,
                          headers={"Authorization": "Bearer monid_live_" + "A" * 32 + "\x7f"})
    assert envelope(answer, 400)["errorCode"] == "VALIDATION_FAILED"
    assert answer.headers["Content-Type"] == "application/json"


def test_header_abuse_never_reaches_a_5xx(web: tuple[Process, str], hostile_key: str) -> None:
    base = web[1]
    insane_ids = ["x" * 5000, "a b", "<script>", "\u00e9"]
    for request_id in insane_ids:
        answer = requests.get(f"{base}/v1/runs", timeout=10, headers={
            "Authorization": f"Bearer {hostile_key}",
            "x-request-id": request_id.encode().decode("latin-1")})
        assert answer.status_code == 200
        # Not echoed: one of the server's own instead.
        assert re.fullmatch("[0-9a-f]{32}", answer.headers["x-request-id"])
    sane = requests.get(f"{base}/v1/runs", timeout=10, headers={
        "Authorization": f"Bearer {hostile_key}", "x-request-id": "client-req-42"})
    assert sane.headers["x-request-id"] == "client-req-42"
    # Headers past what the server reads are refused by it, in the envelope.
    huge = requests.get(f"{base}/v1/runs", timeout=10,
                        headers={"Authorization": f"Bearer {hostile_key}", "X-Big": "y" * 20000})
    assert envelope(huge, 431)["errorCode"] == "HEADERS_TOO_LARGE"
    assert huge.headers["Content-Type"] == "application/json"
    too_many = requests.get(f"{base}/v1/runs", timeout=10,
                            headers={"Authorization": f"Bearer {hostile_key}",
                                     **{f"X-H{n}": "v" for n in range(120)}})
    assert envelope(too_many, 431)["errorCode"] == "HEADERS_TOO_LARGE"
    many = requests.get(f"{base}/v1/runs", timeout=10,
                        headers={"Authorization": f"Bearer {hostile_key}",
                                 **{f"X-H{n}": "v" for n in range(80)}})
    assert many.status_code == 200


@pytest.mark.parametrize("path", [
    "/v1/runs/../../etc/passwd", "/v1/runs/%00", "/v1/runs/" + "A" * 3000,
    "/v1/runs/01JGXYZABCDEFGHJKMNPQRSTVW%0A", "/v1/runs/01jgxyzabcdefghjkmnpqrstvw",
])
def test_odd_run_paths_are_404(web: tuple[Process, str], hostile_key: str, path: str) -> None:
    answer = requests.get(f"{web[1]}{path}", timeout=10,
                          headers={"Authorization": f"Bearer {hostile_key}"})
    envelope(answer, 404)


def test_a_request_line_past_the_servers_limit_is_414_in_the_envelope(
        web: tuple[Process, str], hostile_key: str) -> None:
    answer = requests.get(f"{web[1]}/v1/runs/{'A' * 5000}", timeout=10,
                          headers={"Authorization": f"Bearer {hostile_key}"})
    body = envelope(answer, 414)
    assert body["errorCode"] == "URI_TOO_LONG" and "4094 bytes" in body["message"]
    assert answer.headers["Content-Type"] == "application/json"


def test_a_slow_or_broken_client_does_not_break_the_server(web: tuple[Process, str],
                                                          hostile_key: str) -> None:
    parts = urlsplit(web[1])
    # Announce a body and send half of it, then hang up.
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as sock:
        sock.sendall(b"POST /v1/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + hostile_key.encode() + b"\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"provider\":")
    # Garbage instead of HTTP.
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80)) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100)
        sock.settimeout(5)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            sock.recv(100)
    assert requests.get(f"{web[1]}/healthz", timeout=5).status_code == 200

