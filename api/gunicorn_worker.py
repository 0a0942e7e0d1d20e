"""gunicorn's threaded worker, answering the requests gunicorn itself refuses (a
request line or headers over its limits, malformed HTTP) in the contract's JSON
envelope instead of gunicorn's `text/html` page."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from api.errors import error_code_for

# What the client is told, by the status gunicorn chose; its own wording may quote
# the client's bytes back, so it is not passed on.
MESSAGES = {
    400: "the request is not valid HTTP",
    403: "the request is forbidden",
    414: "the request line (method, path and query) is over the limit of {line} bytes",
    417: "the request's Expect header cannot be met",
    431: "the request's headers are over the limit ({fields} headers of at most {field} "
         "bytes each)",
    500: "internal error",
    501: "the request's transfer coding is not supported",
}


class _CapturedError:
    """Stands in for the client's socket while gunicorn writes its error page, so the
    status gunicorn chose (after logging the error its own way) can be read back."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data

    def send(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def status(self) -> int:
        try:
            return int(self.data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return 400


class EnvelopeThreadWorker(ThreadWorker):
    def handle_exit(self, sig: Any, frame: Any) -> None:
        """On SIGTERM, end the live event streams at once rather than hold the shutdown
        for the graceful timeout: their clients reconnect elsewhere with Last-Event-ID."""
        super().handle_exit(sig, frame)
        services = getattr(getattr(self, "wsgi", None), "extensions", {}).get("monid")
        if services is not None:  # from a thread: a signal handler takes no locks
            threading.Thread(target=services.waiter.end_streams, daemon=True).start()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        captured = _CapturedError()
        super().handle_error(req, captured, addr, exc)
        status = captured.status()
        message = MESSAGES.get(status, MESSAGES[400] if status < 500 else MESSAGES[500]).format(
            line=self.cfg.limit_request_line, fields=self.cfg.limit_request_fields,
            field=self.cfg.limit_request_field_size)
        body = json.dumps({"code": status, "message": message,
                           "errorCode": error_code_for(status)}).encode()
        reason = captured.data.split(b"\r\n", 1)[0].split(b" ", 2)[-1].decode("latin-1")
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"x-request-id: {uuid.uuid4().hex}\r\n\r\n")
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:
            self.log.debug("Failed to send error message.")
