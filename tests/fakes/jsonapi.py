"""A loopback HTTP server base for fake providers, and a generic JSON API built on it.

`FakeServer` holds what every fake shares: start()/stop() on 127.0.0.1 with a free port,
a thread-safe call log and scripted faults. `FakeJsonApi` echoes each request back as JSON
unless a fixed answer was registered with `route()`.

Standard library only: one thread per connection (ThreadingHTTPServer), HTTP/1.1 with
keep-alive and an exact Content-Length on every answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["Call", "FakeJsonApi", "FakeServer", "Match", "Reply", "http_date"]

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
GARBAGE_BODY = b'{"data": <html><body>502 Bad Gateway</body></html>'

# (method, path_prefix); method None or "*" matches any method.
Match = tuple[str | None, str]


def http_date(seconds_from_now: float = 0.0) -> str:
    """An HTTP-date (RFC 9110), e.g. for `fail_next(retry_after=http_date(2))`."""
    return formatdate(time.time() + seconds_from_now, usegmt=True)


@dataclass
class Call:
    """One request as the fake received it."""

    method: str
    path: str  # as sent, without the query string (still percent-encoded)
    query: dict[str, str | list[str]]  # decoded; a repeated name gives a list
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: Any  # parsed JSON, or None when empty or not JSON
    time: float  # time.time() at arrival
    raw_body: bytes = b""
    fault: str | None = None  # "fail", "hang", "slow", "garbage", "disconnect" or None
    status: int | None = None  # status answered, None if no answer was (being) sent


@dataclass
class Reply:
    """An answer. body: None -> empty; bytes/str -> sent as is; anything else -> JSON."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    kind: str
    remaining: int
    match: Match | None
    seconds: float | None = None
    reply: Reply | None = None

    def matches(self, call: Call) -> bool:
        if self.match is None:
            return True
        method, prefix = self.match
        if method not in (None, "*") and method.upper() != call.method:
            return False
        return call.path.startswith(prefix or "")


def _encode(body: Any) -> tuple[bytes, str | None]:
    if body is None:
        return b"", None
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), JSON_CONTENT_TYPE


def _retry_after(value: float | str) -> str:
    if isinstance(value, str):
        return value
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() calls socket.getfqdn(), a DNS lookup: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away (timeouts, resets) are normal here; report anything else.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, opened=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, opened=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        self.server.fake._dispatch(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class FakeServer:
    """Base of the fakes. Subclasses implement `handle(call) -> Reply`."""

    def __init__(self) -> None:
        self.delay: float = 0.0  # seconds added to every answer (a slow provider)
        self.errors: list[BaseException] = []  # exceptions raised by handle()
        self.connections_opened = 0
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: hung requests are dropped, open connections are closed."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ call log

    @property
    def calls(self) -> list[Call]:
        """A copy of the call log, oldest first."""
        with self._cond:
            return list(self._calls)

    def _select(self, method: str | None, path_prefix: str) -> list[Call]:
        wanted = None if method in (None, "*") else method.upper()
        return [
            c
            for c in self._calls
            if (wanted is None or c.method == wanted) and c.path.startswith(path_prefix)
        ]

    def count(self, method: str | None = None, path_prefix: str = "") -> int:
        """Requests received with this method (None: any) whose path starts so."""
        with self._cond:
            return len(self._select(method, path_prefix))

    def last_call(self, method: str | None = None, path_prefix: str = "") -> Call | None:
        with self._cond:
            found = self._select(method, path_prefix)
        return found[-1] if found else None

    def wait_for_count(
        self, n: int, method: str | None = None, path_prefix: str = "", timeout: float = 5.0
    ) -> bool:
        """Block until count(method, path_prefix) >= n; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._select(method, path_prefix)) >= n, timeout=timeout
            )

    def reset(self) -> None:
        """Forget calls, pending faults and errors; `delay` back to 0."""
        with self._cond:
            self._calls.clear()
            self._faults.clear()
            self.errors.clear()
        self.delay = 0.0

    # -------------------------------------------------------------------- faults

    def _push(self, fault: _Fault) -> None:
        if fault.remaining > 0:
            with self._cond:
                self._faults.append(fault)

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        retry_after: float | str | None = None,
        body: Any = None,
        match: Match | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next n matching requests with `status`.

        retry_after: seconds (int/float) or an HTTP-date string (see http_date()).
        body: None -> the provider's error shape; else as in Reply.
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = _retry_after(retry_after)
        reply = Reply(status, self.error_body(status) if body is None else body, extra)
        self._push(_Fault("fail", n, match, reply=reply))

    def hang_next(
        self, n: int = 1, seconds: float | None = None, match: Match | None = None
    ) -> None:
        """Hold the next n matching requests `seconds` then answer normally;
        seconds=None: never answer (the connection is dropped at stop())."""
        self._push(_Fault("hang", n, match, seconds=seconds))

    def slow_next(self, n: int = 1, seconds: float = 1.0, match: Match | None = None) -> None:
        """Sleep `seconds`, then answer the next n matching requests normally."""
        self._push(_Fault("slow", n, match, seconds=seconds))

    def garbage_next(self, n: int = 1, match: Match | None = None) -> None:
        """Answer 200, Content-Type application/json, with a body that is not JSON."""
        self._push(_Fault("garbage", n, match))

    def disconnect_next(self, n: int = 1, match: Match | None = None) -> None:
        """Read the request, then close the connection without answering."""
        self._push(_Fault("disconnect", n, match))

    def pending_faults(self) -> int:
        with self._cond:
            return sum(f.remaining for f in self._faults)

    def _take_fault(self, call: Call) -> _Fault | None:
        # Caller holds self._cond.
        for fault in self._faults:
            if fault.matches(call):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------ for subclasses

    def handle(self, call: Call) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    def error_body(self, status: int, message: str | None = None) -> Any:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        return {"error": {"status": status, "message": message or phrase}}

    def is_stopping(self) -> bool:
        return self._stopping.is_set()

    def pause(self, seconds: float) -> bool:
        """Sleep, waking early on stop(); True if still running afterwards."""
        if seconds > 0:
            self._stopping.wait(seconds)
        return not self._stopping.is_set()

    # ------------------------------------------------------------------ internals

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._cond:
            if opened:
                self._conns.add(conn)
                self.connections_opened += 1
            else:
                self._conns.discard(conn)

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size_line = h.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(h.rfile.read(size))
                h.rfile.readline(65537)
            return b"".join(parts)
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    def _dispatch(self, h: _Handler) -> None:
        try:
            raw = self._read_body(h)
        except (ValueError, OSError):
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.send_error(400, "bad body")
            return
        split = urlsplit(h.path)
        query: dict[str, str | list[str]] = {
            k: v[0] if len(v) == 1 else v
            for k, v in parse_qs(split.query, keep_blank_values=True).items()
        }
        headers: dict[str, str] = {}
        for name, value in h.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        call = Call(h.command, split.path or "/", query, headers, body, time.time(), raw)
        with self._cond:
            self._calls.append(call)
            fault = self._take_fault(call)
            if fault is not None:
                call.fault = fault.kind
            self._cond.notify_all()

        if not self.pause(self.delay):
            return self._drop(h)
        if fault is None:
            return self._send(h, call, self._normal(call))
        if fault.kind == "fail":
            assert fault.reply is not None
            return self._send(h, call, fault.reply)
        if fault.kind in ("hang", "slow"):
            if fault.seconds is None:
                self._stopping.wait()
                return self._drop(h)
            if not self.pause(fault.seconds):
                return self._drop(h)
            return self._send(h, call, self._normal(call))
        if fault.kind == "garbage":
            reply = Reply(200, GARBAGE_BODY, {"Content-Type": JSON_CONTENT_TYPE})
            return self._send(h, call, reply)
        return self._drop(h)  # disconnect

    def _normal(self, call: Call) -> Reply:
        try:
            return self.handle(call)
        except Exception as exc:
            with self._cond:
                self.errors.append(exc)
            return Reply(500, self.error_body(500, f"fake server error: {exc!r}"))

    def _drop(self, h: _Handler) -> None:
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, h: _Handler, call: Call, reply: Reply) -> None:
        if self._stopping.is_set():
            return self._drop(h)
        data, content_type = _encode(reply.body)
        names = {k.lower() for k in reply.headers}
        call.status = reply.status
        try:
            h.send_response(reply.status)
            if content_type is not None and "content-type" not in names:
                h.send_header("Content-Type", content_type)
            for name, value in reply.headers.items():
                if name.lower() != "content-length":
                    h.send_header(name, value)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if call.method != "HEAD" and data:
                h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True


class FakeJsonApi(FakeServer):
    """A generic synchronous JSON API.

    Any method and path answers 200 with an echo of the request:
    {"method", "path", "query", "body", "headers"} (header names lower-case),
    unless a fixed answer was registered for that exact path with route().
    """

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[tuple[str, str], tuple[int, Any, dict[str, str]]] = {}

    def route(
        self,
        method: str,
        path: str,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer `method path` (exact path, no query; method "*" for any) with a fixed
        reply. body as in Reply, or a callable(call) returning such a body or a Reply."""
        with self._cond:
            self._routes[(method.upper(), path)] = (status, body, dict(headers or {}))

    def clear_routes(self) -> None:
        with self._cond:
            self._routes.clear()

    def handle(self, call: Call) -> Reply:
        with self._cond:
            found = self._routes.get((call.method, call.path)) or self._routes.get(("*", call.path))
        if found is None:
            return Reply(
                200,
                {
                    "method": call.method,
                    "path": call.path,
                    "query": call.query,
                    "body": call.body,
                    "headers": call.headers,
                },
            )
        status, body, headers = found
        if callable(body):
            body = body(call)
            if isinstance(body, Reply):
                return Reply(body.status, body.body, {**headers, **body.headers})
        return Reply(status, body, dict(headers))
