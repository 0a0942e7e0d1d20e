"""One webhook try against a real loopback receiver: what is sent, the address checked
at send time, redirects not followed, the answer capped, the whole try timed, TLS to
the host name on the checked address."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.webhooks.sender import MAX_HEAD_BYTES, USER_AGENT, send
from tests.fakes.receiver import Answer, Receiver

BODY = b'{"type":"run.completed","timestamp":"2026-12-01T21:35:15.123Z","data":{}}'
HEADERS = {"webhook-id": "01JGXYZABCDEFGHJKMNPQRSTVW", "webhook-timestamp": "1",
           "webhook-signature": "v1,abc"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def only(host: str, *addresses: str) -> Any:
    """A resolver that knows one name."""
    def resolve(name: str, port: int) -> list[str]:
        assert name == host
        return list(addresses)
    return resolve


def test_a_try_posts_the_body_and_headers_and_reads_the_answer(receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(204, b"")
    result = send(receiver.url("/hook?x=1"), BODY, HEADERS, timeout=5, allow_insecure=True)
    assert (result.status_code, result.error, result.delivered) == (204, None, True)
    assert result.head == ""
    [got] = receiver.received
    assert got.path == "/hook?x=1"
    assert got.body == BODY
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert {k: got.headers[k] for k in HEADERS} == HEADERS
    assert "accept-encoding" not in got.headers


def test_the_name_is_resolved_at_send_time_and_sent_as_the_host(receiver: Receiver) -> None:
    url = f"http://hooks.example.test:{receiver.port}/in"
    result = send(url, BODY, HEADERS, timeout=5, allow_insecure=True,
                  resolver=only("hooks.example.test", "127.0.0.1"))
    assert result.status_code == 200 and result.delivered
    assert receiver.received[0].headers["host"] == f"hooks.example.test:{receiver.port}"


def test_a_name_resolving_to_a_private_address_is_refused_unless_insecure_is_allowed(
        receiver: Receiver) -> None:
    # What https would reach if the check let it: the receiver is never called.
    url = "https://hooks.example.com/in"
    result = send(url, BODY, HEADERS, timeout=5, allow_insecure=False,
                  resolver=only("hooks.example.com", "93.184.216.34", "127.0.0.1"))
    assert result.status_code is None and not result.delivered
    assert result.error == ("not sent: hooks.example.com resolves to an address that is "
                            "not public")
    result = send(receiver.url(), BODY, HEADERS, timeout=5, allow_insecure=False)
    assert result.error == "not sent: a webhook URL is https"
    result = send("https://127.0.0.1/in", BODY, HEADERS, timeout=5, allow_insecure=False)
    assert result.error == "not sent: a webhook URL must go to a public address"
    assert receiver.received == []


def test_a_name_that_does_not_resolve_is_a_failed_try() -> None:
    def nothing(host: str, port: int) -> list[str]:
        return []
    result = send("https://hooks.example.com/in", BODY, HEADERS, timeout=5,
                  allow_insecure=False, resolver=nothing)
    assert result.status_code is None
    assert result.error == "hooks.example.com resolved to no address"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_and_says_where_it_pointed(receiver: Receiver,
                                                              status: int) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.answer = lambda got: (Answer(status, b"moved", {"Location": elsewhere})
                                   if got.path == "/hook" else Answer())
    result = send(receiver.url(), BODY, HEADERS, timeout=5, allow_insecure=True)
    assert result.status_code == status and not result.delivered
    assert result.error == f"redirect not followed (Location: {elsewhere})"
    assert [r.path for r in receiver.received] == ["/hook"]


def test_the_answer_is_read_only_up_to_the_cap(receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(200, b"A" * 5_000_000)
    started = time.monotonic()
    result = send(receiver.url(), BODY, HEADERS, timeout=5, allow_insecure=True)
    assert result.status_code == 200
    assert result.head == "A" * MAX_HEAD_BYTES
    assert time.monotonic() - started < 2


def test_an_answer_whose_body_never_ends_keeps_its_status(receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(200, b"partial", endless=10_000_000)
    result = send(receiver.url(), BODY, HEADERS, timeout=0.5, allow_insecure=True)
    assert result.status_code == 200 and result.delivered
    assert result.head == "partial"
    assert 400 <= result.duration_ms < 2000


def test_an_answer_of_bytes_that_are_not_text_is_kept_as_text(receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(500, b"\x00\xff\xfeoops" + "é".encode() * 600)
    result = send(receiver.url(), BODY, HEADERS, timeout=5, allow_insecure=True)
    assert result.status_code == 500 and result.error == "the receiver answered 500"
    assert result.head is not None and "\x00" not in result.head
    assert len(result.head) <= MAX_HEAD_BYTES and result.head[3:7] == "oops"


def test_a_receiver_that_hangs_is_cut_off_at_the_timeout(receiver: Receiver) -> None:
    receiver.answer = lambda _: Answer(200, delay=30)
    started = time.monotonic()
    result = send(receiver.url(), BODY, HEADERS, timeout=0.5, allow_insecure=True)
    took = time.monotonic() - started
    assert result.status_code is None and result.error == "timed out after 0.5 s"
    assert 0.4 < took < 2 and 400 <= result.duration_ms < 2000


def test_a_receiver_that_drips_its_headers_is_cut_off_at_the_timeout() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            if stop.wait(0.05):
                break
            conn.send(bytes([byte]))
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    result = send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=0.6,
                  allow_insecure=True)
    stop.set()
    server.close()
    assert result.error == "timed out after 0.6 s"
    assert time.monotonic() - started < 2


def test_a_closed_port_is_a_failed_try() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=2, allow_insecure=True)
    assert (result.status_code, result.error) == (None, "connection refused")


def test_a_receiver_that_closes_without_answering_is_a_failed_try() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def close() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=close, daemon=True).start()
    result = send(f"http://127.0.0.1:{port}/", BODY, HEADERS, timeout=2, allow_insecure=True)
    server.close()
    assert result.status_code is None
    assert result.error == "the receiver closed the connection without answering"


# --- TLS: the connection goes to the checked address, TLS speaks to the host name ---


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """An https receiver on 127.0.0.1 with a certificate for hooks.example.test only;
    the server names (SNI) it was asked for."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.example.test",
                    "-addext", "subjectAltName=DNS:hooks.example.test"],
                   check=True, capture_output=True, timeout=60)
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = remember

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    yield server.server_address[1], cert, names
    server.shutdown()
    server.server_close()


def test_tls_goes_to_the_checked_address_and_verifies_the_host_name(
        tls_receiver: tuple[int, Path, list[str | None]]) -> None:
    port, cert, names = tls_receiver
    trusting = ssl.create_default_context(cafile=str(cert))
    result = send(f"https://hooks.example.test:{port}/in", BODY, HEADERS, timeout=5,
                  allow_insecure=True, resolver=only("hooks.example.test", "127.0.0.1"),
                  ssl_context=trusting)
    assert (result.status_code, result.error) == (200, None)
    assert result.head == f"hooks.example.test:{port}"  # the Host header it got
    assert names == ["hooks.example.test"]


def test_a_certificate_for_another_name_is_refused(
        tls_receiver: tuple[int, Path, list[str | None]]) -> None:
    port, cert, _ = tls_receiver
    trusting = ssl.create_default_context(cafile=str(cert))
    result = send(f"https://other.example.test:{port}/in", BODY, HEADERS, timeout=5,
                  allow_insecure=True, resolver=only("other.example.test", "127.0.0.1"),
                  ssl_context=trusting)
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith("TLS: the certificate was not accepted (Hostname mismatch")


def test_an_untrusted_certificate_is_refused(
        tls_receiver: tuple[int, Path, list[str | None]]) -> None:
    port, _, _ = tls_receiver
    result = send(f"https://hooks.example.test:{port}/in", BODY, HEADERS, timeout=5,
                  allow_insecure=True, resolver=only("hooks.example.test", "127.0.0.1"))
    assert result.error is not None
    assert result.error.startswith("TLS: the certificate was not accepted (self")


def test_a_tls_handshake_that_never_ends_is_cut_off_at_the_timeout() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    started = time.monotonic()
    result = send(f"https://hooks.example.test:{port}/", BODY, HEADERS, timeout=0.5,
                  allow_insecure=True, resolver=only("hooks.example.test", "127.0.0.1"))
    took = time.monotonic() - started
    server.close()
    for conn in accepted:
        conn.close()
    assert (result.status_code, result.error) == (None, "timed out after 0.5 s")
    assert took < 2
