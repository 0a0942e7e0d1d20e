"""One try of a webhook delivery: a POST of the body, signed headers given, to the
delivery's URL. Pure of Celery and of the database.

The URL's host is resolved and checked at every try (`urls.resolve_target`), and the
connection goes to the address checked, never to the name again: the `Host` header and
TLS's server name (SNI, and the name the certificate is verified against) are the host
name. Redirects are never followed (a 3xx is a failed try that says where it pointed);
the whole try, connecting included, has `timeout` seconds, after which the connection
is cut; at most the first `MAX_HEAD_BYTES` of the answer are read, for the log.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.webhooks.urls import (
    Resolved,
    ResolveFailed,
    Resolver,
    UrlRefused,
    resolve_target,
    system_resolver,
)

MAX_HEAD_BYTES = 1024  # of the answer, read and kept in the log
MAX_ERROR_CHARS = 1000
USER_AGENT = "monid-runs-webhooks/1"


@dataclass(frozen=True)
class TryResult:
    """How a try went: the answer's status (None: no answer), how long it took, the
    first bytes of the answer (text, at most MAX_HEAD_BYTES characters), and what went
    wrong (None when the receiver answered 2xx)."""

    status_code: int | None
    duration_ms: int
    head: str | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """The receiver answered 410 Gone: it wants no more deliveries."""
        return self.status_code == 410


def _text(raw: bytes) -> str:
    # PostgreSQL's text holds no NUL; one byte never decodes to more than one character.
    return raw[:MAX_HEAD_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_ERROR_CHARS else message[:MAX_ERROR_CHARS - 1] + "…"


class _Connection(http.client.HTTPConnection):
    """A connection to the checked address, speaking TLS to the host name for https."""

    def __init__(self, resolved: Resolved, timeout: float,
                 context: ssl.SSLContext | None) -> None:
        super().__init__(str(resolved.ip), resolved.port, timeout=timeout)
        self.resolved = resolved
        self.context = context

    def connect(self) -> None:
        sock = socket.create_connection((str(self.resolved.ip), self.resolved.port),
                                        self.timeout)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock  # the deadline can cut a handshake that drags on too
        if self.resolved.target.scheme == "https":
            context = self.context or ssl.create_default_context()
            self.sock = context.wrap_socket(sock, server_hostname=self.resolved.host)
        else:
            self.sock = sock

    def cut(self) -> None:
        """End the connection from another thread: a read or write blocked on it
        returns at once."""
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _host_header(resolved: Resolved) -> str:
    target = resolved.target
    host = target.host
    if isinstance(target.literal, ipaddress.IPv6Address):
        host = f"[{host}]"
    default = (target.scheme == "https" and target.port == 443) or (
        target.scheme == "http" and target.port == 80)
    return host if default else f"{host}:{target.port}"


def _why(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the certificate was not accepted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the receiver closed the connection without answering"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the receiver"
    if isinstance(exc, http.client.HTTPException):
        return f"malformed answer ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"connection failed ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


def send(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float,
         allow_insecure: bool, resolver: Resolver = system_resolver,
         ssl_context: ssl.SSLContext | None = None) -> TryResult:
    """POST `body` to `url` once, with `headers` (the signature's, and Content-Type and
    User-Agent added here). Never raises for anything the network or the receiver
    does: the result says what happened."""
    started = time.monotonic()

    def result(status: int | None, head: str | None, error: str | None) -> TryResult:
        elapsed = int((time.monotonic() - started) * 1000)
        return TryResult(status, max(0, elapsed), head, _short(error) if error else None)

    try:
        resolved = resolve_target(url, allow_insecure=allow_insecure, resolver=resolver)
    except UrlRefused as exc:
        return result(None, None, f"not sent: {exc}")
    except ResolveFailed as exc:
        return result(None, None, str(exc))
    remaining = timeout - (time.monotonic() - started)
    if remaining <= 0:
        return result(None, None, f"timed out after {timeout:g} s (resolving the host)")
    conn = _Connection(resolved, remaining, ssl_context)
    cut = threading.Event()

    def on_deadline() -> None:
        cut.set()
        conn.cut()

    watchdog = threading.Timer(remaining, on_deadline)
    watchdog.daemon = True
    watchdog.start()
    status: int | None = None
    head = b""
    error: str | None = None
    try:
        parts = urlsplit(resolved.target.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", _host_header(resolved))
        conn.putheader("User-Agent", USER_AGENT)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.putheader("Connection", "close")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        answer = conn.getresponse()
        status = answer.status
        location = answer.getheader("Location")
        try:
            while len(head) < MAX_HEAD_BYTES:
                chunk = answer.read1(MAX_HEAD_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
        except (OSError, http.client.HTTPException, ValueError):
            pass  # the status is the answer; its first bytes are only for the log
        if 300 <= status < 400:
            error = ("redirect not followed (Location: "
                     f"{(location or 'none')[:MAX_ERROR_CHARS - 50]})")
        elif not 200 <= status < 300:
            error = f"the receiver answered {status}"
    except Exception as exc:  # the network and the receiver fail in many ways
        error = f"timed out after {timeout:g} s" if cut.is_set() else _why(exc, timeout)
    finally:
        watchdog.cancel()
        with contextlib.suppress(Exception):
            conn.close()
    return result(status, _text(head) if status is not None else None, error)
