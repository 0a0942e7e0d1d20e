"""The MCP server at `/mcp`, on the web process and its port.

The official SDK's low-level server (`mcp.server.lowlevel.Server`) answers the
protocol, in the Streamable HTTP transport, stateless, with JSON answers; the tools
are `api/mcp_tools.py`. It is an ASGI app, served under gunicorn's threaded
workers through `a2wsgi`: `McpMount` sends `/mcp` to it and every other path to the
Flask app untouched, so the REST routes pay one comparison of the path.

Each gunicorn worker process starts its own event loop (a thread) on its first
`/mcp` request, and the SDK's session manager runs in it for the process's life. A
request's key is checked in gunicorn's thread before anything of the request's body
is read: without a valid key, `401` with `WWW-Authenticate: Bearer` in the
contract's envelope. A tool runs in a thread of its own (it waits on PostgreSQL,
and `wait` holds it up to a minute) and pays the same rate limit as a REST request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from http import HTTPStatus
from importlib import metadata
from typing import Any, cast

import anyio
import mcp_types as types
from a2wsgi import ASGIMiddleware
from flask import Flask
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from api import errors
from api.mcp_tools import BY_NAME, Call, ToolSpec
from api.ratelimit import check_rate
from shared.callers import Caller, authenticate_key
from shared.db import DatabaseUnavailable
from shared.errors import InvalidRequest, ServiceError, Unauthorized
from shared.ids import sane_request_id
from shared.logs import request_id_var
from shared.services import Services

log = logging.getLogger("monid.mcp")
MCP_PATH = "/mcp"
CALLER_KEY = "monid.caller"
REQUEST_ID_KEY = "monid.request_id"
INSTRUCTIONS = (
    "monid-runs: run providers' data endpoints. Find one with monid_discover, read its "
    "input schema with monid_inspect, start it with monid_run (it spends money: "
    "monid_balance shows the wallet), and read the result with monid_get_run (`wait` up to "
    "60 s); page through a big result with monid_get_run_items.")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _version() -> str:
    try:
        return metadata.version("monid-runs")
    except metadata.PackageNotFoundError:
        return "0"


class McpTools:
    """The protocol's handlers of the tools, on the app's services."""

    def __init__(self, app: Flask, svc: Services) -> None:
        self.app = app
        self.svc = svc
        # Tools wait on PostgreSQL (and a `wait` up to a minute): each takes a thread, as
        # many at once as gunicorn has for requests.
        self.limiter = anyio.CapacityLimiter(max(1, svc.settings.web_threads))
        self.listed = types.ListToolsResult(tools=[self._tool(t) for t in BY_NAME.values()])

    @staticmethod
    def _tool(spec: ToolSpec) -> types.Tool:
        return types.Tool(
            name=spec.name, title=spec.title, description=spec.description,
            input_schema=spec.input_schema, output_schema=spec.output_schema,
            annotations=types.ToolAnnotations(
                title=spec.title, read_only_hint=spec.read_only,
                destructive_hint=spec.destructive if not spec.read_only else None,
                idempotent_hint=spec.idempotent if not spec.read_only else None,
                open_world_hint=spec.open_world))

    async def list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return self.listed

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        spec = BY_NAME.get(params.name)
        if spec is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        request = getattr(ctx, "request", None)
        environ = request.scope.get("wsgi_environ", {}) if request is not None else {}
        caller = environ.get(CALLER_KEY)
        if not isinstance(caller, Caller):  # only McpMount's requests reach the tools
            raise MCPError(code=types.INTERNAL_ERROR, message="no caller")
        request_id = environ.get(REQUEST_ID_KEY)
        return await anyio.to_thread.run_sync(
            self._call, spec, caller, params.arguments, request_id, limiter=self.limiter)

    def _call(self, spec: ToolSpec, caller: Caller, arguments: dict[str, Any] | None,
              request_id: str | None) -> types.CallToolResult:
        started = time.perf_counter()
        token = request_id_var.set(request_id)
        error_code = None
        try:
            with self.app.app_context():
                try:
                    check_rate(self.svc.redis, caller.api_key_id,
                               self.svc.settings.rate_limit_per_minute)
                    args = spec.load(arguments)
                    answer = spec.run(Call(self.svc, caller.caller, args))
                except Exception as exc:
                    result, error_code = tool_error(exc)
                    return result
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=answer.text)],
                structured_content=answer.structured)
        finally:
            log.info("mcp tool", extra={"tool": spec.name, "errorCode": error_code,
                                        "ms": round((time.perf_counter() - started) * 1000, 2)})
            request_id_var.reset(token)


def tool_error(exc: Exception) -> tuple[types.CallToolResult, str]:
    """A tool's error as the REST API answers it: its errorCode, message and fields."""
    status, code, message = 500, errors.INTERNAL.code, "internal error"
    fields: Mapping[str, list[str]] | None = None
    if isinstance(exc, errors.ApiError):
        status, code, message, fields = exc.status, exc.error_code, exc.message, exc.errors
    elif isinstance(exc, ServiceError):
        answer = errors.answer_for(exc) or errors.INTERNAL
        status, code, message = answer.status, answer.code, exc.message
        fields = exc.errors if isinstance(exc, InvalidRequest) else None
    elif isinstance(exc, DatabaseUnavailable):
        status, code = 503, errors.SERVICE_UNAVAILABLE.code
        message = "the database is unavailable; try again shortly"
    else:
        log.exception("mcp tool failed")
    envelope: dict[str, Any] = {"code": status, "message": message, "errorCode": code}
    if fields:
        envelope["errors"] = dict(fields)
    text = f"{code}: {message}"
    if fields:
        text += "\n" + json.dumps(fields, ensure_ascii=False)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structured_content=envelope, is_error=True), code


class McpRuntime:
    """The MCP server of one process: its event loop (a thread), the SDK's session
    manager running in it, and the WSGI bridge to it. Started on first use in each
    process (a forked child starts its own)."""

    def __init__(self, app: Flask, svc: Services) -> None:
        self.app = app
        self.svc = svc
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._bridge: WsgiApp | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running: Future[None] | None = None

    def bridge(self) -> WsgiApp:
        bridge = self._bridge
        if bridge is not None and self._pid == os.getpid():
            return bridge
        with self._lock:
            if self._bridge is None or self._pid != os.getpid():
                self._start()
            assert self._bridge is not None
            return self._bridge

    def _start(self) -> None:
        tools = McpTools(self.app, self.svc)
        server: Server[Any] = Server("monid-runs", version=_version(), title="monid-runs",
                                     instructions=INSTRUCTIONS, on_list_tools=tools.list_tools,
                                     on_call_tool=tools.call_tool,
                                     get_tool_input_schema=lambda name: (
                                         BY_NAME[name].input_schema if name in BY_NAME
                                         else None))
        manager = StreamableHTTPSessionManager(
            app=server, json_response=True, stateless=True,
            max_request_body_size=self.svc.settings.max_body_bytes)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mcp-loop", daemon=True)
        thread.start()
        started: Future[None] = Future()

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with manager.run():
                    started.set_result(None)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._running = asyncio.run_coroutine_threadsafe(serve(), loop)
        started.result(timeout=10)
        self._loop = loop
        self._pid = os.getpid()
        self._bridge = cast(WsgiApp, ASGIMiddleware(manager.handle_request,  # type: ignore[arg-type]
                                                    loop=loop))

    def close(self) -> None:
        loop, stop, running = self._loop, self._stop, self._running
        if loop is None or self._pid != os.getpid():
            return
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        if running is not None:
            try:
                running.result(timeout=5)
            except Exception:
                log.debug("mcp server ended with an error", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        self._bridge = None
        self._loop = None


class McpMount:
    """WSGI: `/mcp` to the MCP server (once its key is checked), the rest to Flask."""

    def __init__(self, flask_wsgi: WsgiApp, runtime: McpRuntime) -> None:
        self.flask_wsgi = flask_wsgi
        self.runtime = runtime

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != MCP_PATH:
            return self.flask_wsgi(environ, start_response)
        return self._mcp(environ, start_response)

    def _mcp(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request_id = sane_request_id(environ.get("HTTP_X_REQUEST_ID"))
        started = time.perf_counter()
        status_seen: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_seen.append(status)
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            return start_response(status, [*headers, ("x-request-id", request_id)], exc_info)

        try:
            try:
                caller = self._authenticate(environ)
            except Unauthorized as exc:
                return self._error(start, errors.UNAUTHORIZED, exc.message)
            except DatabaseUnavailable:
                return self._error(start, errors.SERVICE_UNAVAILABLE,
                                   "the database is unavailable; try again shortly")
            environ[CALLER_KEY] = caller
            environ[REQUEST_ID_KEY] = request_id
            return self.runtime.bridge()(environ, start)
        finally:
            log.info("request", extra={
                "method": environ.get("REQUEST_METHOD"), "route": MCP_PATH,
                "status": int(status_seen[-1].split(" ", 1)[0]) if status_seen else None,
                "ms": round((time.perf_counter() - started) * 1000, 2),
                "requestId": request_id})

    def _authenticate(self, environ: dict[str, Any]) -> Caller:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = header.partition(" ")
        if not header:
            raise Unauthorized("missing Authorization header: send 'Authorization: Bearer "
                               "<api-key>'")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("malformed Authorization header: expected 'Bearer <api-key>'")
        return authenticate_key(self.runtime.svc, key.strip())

    @staticmethod
    def _error(start: StartResponse, answer: errors.ErrorAnswer, message: str
               ) -> Iterable[bytes]:
        body = json.dumps({"code": answer.status, "message": message,
                           "errorCode": answer.code}).encode()
        start(f"{answer.status} {HTTPStatus(answer.status).phrase}",
              [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               *answer.sends.items()])
        return [body]


def init_app(app: Flask, svc: Services) -> McpRuntime:
    """Serve `/mcp` beside the app's routes, on the same WSGI app."""
    runtime = McpRuntime(app, svc)
    app.wsgi_app = McpMount(app.wsgi_app, runtime)  # type: ignore[method-assign]
    app.extensions["monid.mcp"] = runtime
    return runtime
