"""`monidctl mcp`: the MCP tools over stdio, for an agent on this machine.

It serves, over stdin and stdout, the tools of a monid-runs server's `/mcp`
(`MONID_API_BASE_URL`, with the key `MONID_API_KEY`): it lists them from there and
passes each call on over HTTP, answering what the server answered. The tools are
the server's own, names, schemas and errors alike; nothing of them is kept here.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from shared.settings import AgentClientSettings, SettingsError, load_agent_client_settings

# A call may wait up to 60 s for a run (`wait`): reads wait longer than that.
READ_TIMEOUT_SECONDS = 90.0


def _version() -> str:
    try:
        return metadata.version("monid-runs")
    except metadata.PackageNotFoundError:
        return "0"


async def serve(settings: AgentClientSettings) -> None:
    """Serve the remote server's tools on stdio until stdin closes."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {settings.api_key}",
                 "User-Agent": f"monidctl-mcp/{_version()}"},
        timeout=httpx2.Timeout(30.0, read=READ_TIMEOUT_SECONDS))
    async with http:
        # The key is checked first, so that a refused key is said plainly, in the
        # server's own words.
        whoami = await http.get(f"{settings.base_url}/v1/auth/whoami")
        if whoami.status_code != 200:
            raise KeyRefused(_message(whoami))
        async with Client(streamable_http_client(f"{settings.base_url}/mcp",
                                                 http_client=http)) as remote:
            await _serve_tools(remote, settings)


async def _serve_tools(remote: Client, settings: AgentClientSettings) -> None:
    listed = await remote.list_tools()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return listed

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            return await remote.call_tool(params.name, params.arguments or {},
                                          read_timeout_seconds=READ_TIMEOUT_SECONDS)
        except httpx2.HTTPError as exc:
            return types.CallToolResult(is_error=True, content=[types.TextContent(
                type="text", text=f"SERVICE_UNAVAILABLE: {settings.base_url} did not answer "
                                  f"({type(exc).__name__}); try again shortly")])

    server: Server[Any] = Server("monid-runs", version=_version(), title="monid-runs",
                                 instructions=remote.instructions, on_list_tools=list_tools,
                                 on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


class KeyRefused(Exception):
    """The server did not take the key (or did not answer as a monid-runs server)."""


def _message(response: httpx2.Response) -> str:
    try:
        said = response.json().get("message")
    except (ValueError, AttributeError):
        said = None
    return f"the server answered {response.status_code}" + (f": {said}" if said else "")


def run_stdio() -> int:
    """`monidctl mcp`: 0 when stdin closes; 1, with a line on stderr, when the server
    cannot be reached or refuses the key; 2 for a missing or malformed setting."""
    try:
        settings = load_agent_client_settings()
    except SettingsError as exc:
        print(f"monidctl mcp: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(serve, settings)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # an exception group from the transport's task group
        reason = _reason(exc)
        print(f"monidctl mcp: {settings.base_url}/mcp: {reason}", file=sys.stderr)
        return 1
    return 0


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx2.HTTPStatusError):
        if exc.response.status_code == 401:
            return "the server refused the key (401): check MONID_API_KEY"
        return f"the server answered {exc.response.status_code}"
    if isinstance(exc, httpx2.HTTPError):
        return f"cannot reach the server ({type(exc).__name__}): check MONID_API_BASE_URL"
    return str(exc) or type(exc).__name__
