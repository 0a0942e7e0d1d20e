"""The MCP server at /mcp, with the SDK's own client over real HTTP against gunicorn
(and a worker), `monidctl mcp` through the SDK's stdio client, and monid's own
command-line client asking who it is."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
import requests
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from psycopg_pool import ConnectionPool

from shared import store
from shared.catalog import load_catalog
from shared.db import autocommit, transaction
from shared.ids import new_run_id
from shared.settings import DEFAULT_CATALOG_DIR, load_settings
from shared.store.catalog import sync_catalog
from tests.e2e.conftest import Stack
from tests.helpers import KeyMaker, auth, monid_cli
from tests.processes import ROOT
from worker.providers.base import ProviderResult
from worker.results import ResultWriter

pytestmark = pytest.mark.e2e
T = TypeVar("T")
TOOLS = {"monid_discover", "monid_inspect", "monid_run", "monid_get_run",
         "monid_get_run_items", "monid_stop_run", "monid_list_runs", "monid_balance",
         "monid_list_workspaces"}
READ_ONLY = TOOLS - {"monid_run", "monid_stop_run"}


@asynccontextmanager
async def connect(base_url: str, key: str, **options: Any) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(headers=auth(key), timeout=httpx2.Timeout(30, read=90))
    async with http, Client(streamable_http_client(f"{base_url}/mcp", http_client=http),
                            **options) as client:
        yield client


def run(stack: Stack, key: str, work: Callable[[Client], Awaitable[T]], **options: Any) -> T:
    async def main() -> T:
        async with connect(stack.base_url, key, **options) as client:
            return await work(client)
    return asyncio.run(main())


def test_tools_are_monids_with_schemas_and_annotations(stack: Stack, e2e_key: KeyMaker) -> None:
    listed = run(stack, e2e_key("mcp_list"), lambda c: c.list_tools())
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["additionalProperties"] is False
        assert "workspaceId" in tool.input_schema["properties"], name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        assert tool.description and tool.annotations is not None
        assert tool.annotations.read_only_hint is (name in READ_ONLY), name
    run_tool = tools["monid_run"]
    assert "spends money" in (run_tool.description or "")
    assert run_tool.annotations is not None and run_tool.annotations.open_world_hint
    assert set(run_tool.input_schema["required"]) == {"provider", "endpoint", "input"}
    assert tools["monid_get_run"].input_schema["properties"]["wait"]["maximum"] == 60
    assert tools["monid_stop_run"].annotations.destructive_hint  # type: ignore[union-attr]


def test_every_tool_and_a_run_to_completed(stack: Stack, e2e_key: KeyMaker,
                                           pool: ConnectionPool) -> None:
    key = e2e_key("mcp_user")
    with transaction(pool) as conn:
        sync_catalog(conn, load_catalog(DEFAULT_CATALOG_DIR))

    async def work(c: Client) -> dict[str, Any]:
        out: dict[str, Any] = {}
        found = await c.call_tool("monid_discover", {"query": "echo my input", "limit": 3})
        assert not found.is_error and found.structured_content is not None
        assert found.structured_content["results"][0]["endpoint"] == "/echo"
        card = await c.call_tool("monid_inspect", {"provider": "demo", "endpoint": "/echo"})
        assert card.structured_content["inputSchema"]["type"] == "object"  # type: ignore[index]
        began = time.perf_counter()
        started = await c.call_tool("monid_run", {
            "provider": "demo", "endpoint": "/echo",
            "input": {"body": {"searchTerms": ["AI"]}}, "workspaceId": "ignored"})
        assert not started.is_error, started.content
        run_id = started.structured_content["runId"]  # type: ignore[index]
        assert started.structured_content["status"] == "RUNNING"  # type: ignore[index]
        done = await c.call_tool("monid_get_run", {"runId": run_id, "wait": 30})
        out["round_trip_ms"] = (time.perf_counter() - began) * 1000
        run = done.structured_content
        assert run is not None and run["status"] == "COMPLETED", done.content
        assert run["output"] == {"searchTerms": ["AI"]} and run["outputTruncated"] is False
        assert run["input"] == {"body": {"searchTerms": ["AI"]}}
        assert done.content[0].text.startswith(f"run {run_id} (demo /echo): COMPLETED")
        # A run waited for in one call: flat input.
        waited = await c.call_tool("monid_run", {"provider": "demo", "endpoint": "/echo",
                                                 "input": {"n": 1}, "wait": 30})
        assert waited.structured_content["status"] == "COMPLETED"  # type: ignore[index]
        assert waited.structured_content["output"] == {"n": 1}  # type: ignore[index]
        listed = await c.call_tool("monid_list_runs", {"limit": 1})
        assert listed.structured_content["items"][0]["runId"] == (  # type: ignore[index]
            waited.structured_content["runId"])  # type: ignore[index]
        assert listed.structured_content["cursor"]  # type: ignore[index]
        page2 = await c.call_tool("monid_list_runs", {
            "limit": 5, "status": "COMPLETED",
            "cursor": listed.structured_content["cursor"]})  # type: ignore[index]
        assert [r["runId"] for r in page2.structured_content["items"]] == [run_id]  # type: ignore[index]
        items = await c.call_tool("monid_get_run_items", {"runId": run_id})
        assert items.structured_content == {"items": [{"searchTerms": ["AI"]}], "cursor": None,
                                            "total": 1}
        ended = await c.call_tool("monid_stop_run", {"runId": run_id})
        assert ended.is_error
        assert ended.structured_content["errorCode"] == "RUN_NOT_STOPPABLE"  # type: ignore[index]
        sleeping = await c.call_tool("monid_run", {"provider": "demo", "endpoint": "/sleep",
                                                   "input": {"seconds": 30}})
        sleep_id = sleeping.structured_content["runId"]  # type: ignore[index]
        stopping = await c.call_tool("monid_stop_run", {"runId": sleep_id})
        assert stopping.structured_content["status"] == "STOPPING"  # type: ignore[index]
        stopped = await c.call_tool("monid_get_run", {"runId": sleep_id, "wait": 20})
        assert stopped.structured_content["status"] == "STOPPED"  # type: ignore[index]
        balance = await c.call_tool("monid_balance", {})
        assert set(balance.structured_content) == {"balance", "held", "available"}  # type: ignore[arg-type]
        workspaces = await c.call_tool("monid_list_workspaces", {})
        spaces = workspaces.structured_content["workspaces"]  # type: ignore[index]
        assert len(spaces) == 1 and spaces[0]["slug"] == "mcp-user"
        return out

    out = run(stack, key, work)
    print(f"monid_run + monid_get_run round trip: {out['round_trip_ms']:.1f} ms")
    # The same workspace as the REST route says.
    rest = requests.get(f"{stack.base_url}/v1/auth/workspaces", headers=auth(key), timeout=10)
    assert rest.json()["workspaces"][0]["slug"] == "mcp-user"


def _deliver(pool: ConnectionPool, caller: str, items: list[Any]) -> str:
    """A COMPLETED run of the caller with these items, written as a worker writes them."""
    settings = load_settings({"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x"})
    endpoint = load_catalog(DEFAULT_CATALOG_DIR).find("demo", "/echo")
    assert endpoint is not None
    run_id = new_run_id()
    with transaction(pool) as conn:
        store.insert_run(conn, run_id=run_id, caller=caller, api_key_id=None, endpoint=endpoint,
                         input={})
    with autocommit(pool) as conn:
        claim = store.claim_run(conn, run_id, worker="test", lease_seconds=60)
    assert claim is not None

    ended = ResultWriter(settings=settings, pool=pool).write(
        claim, ProviderResult(output=items), cost_of=lambda n: 0)
    assert ended is not None and ended.status == "COMPLETED"
    return run_id


def test_a_large_result_is_inline_in_part_and_paged(stack: Stack, e2e_key: KeyMaker,
                                                    pool: ConnectionPool) -> None:
    key = e2e_key("mcp_big")
    items = [{"id": n, "text": "x" * 200, "author": {"name": f"a{n}"}} for n in range(500)]
    run_id = _deliver(pool, "USER#mcp_big", items)

    async def work(c: Client) -> list[Any]:
        got = await c.call_tool("monid_get_run", {"runId": run_id})
        run = got.structured_content
        assert run is not None and run["outputTruncated"] is True
        assert run["itemsTotal"] == 500 and run["outputBytes"] > 100_000
        inline = run["output"]
        assert 0 < len(inline) < 500 and inline == items[:len(inline)]
        assert len(json.dumps(run["output"], separators=(",", ":"))) <= 20 * 1024
        assert "monid_get_run_items" in got.content[0].text
        collected = list(inline)
        cursor = run["itemsCursor"]
        pages = 0
        while cursor:
            page = await c.call_tool("monid_get_run_items",
                                     {"runId": run_id, "cursor": cursor, "limit": 1000})
            assert not page.is_error, page.content
            body = page.structured_content
            assert body is not None and body["total"] == 500
            assert len(json.dumps(body["items"], separators=(",", ":"))) < 20 * 1024 + 400
            collected.extend(body["items"])
            cursor = body["cursor"]
            pages += 1
        assert collected == items and pages > 3
        picked = await c.call_tool("monid_get_run_items",
                                   {"runId": run_id, "limit": 2, "fields": "id,author.name"})
        assert picked.structured_content["items"] == [  # type: ignore[index]
            {"id": 0, "author": {"name": "a0"}}, {"id": 1, "author": {"name": "a1"}}]
        return collected

    run(stack, key, work)


def test_a_wrong_key_is_401_before_anything_is_read(stack: Stack, e2e_key: KeyMaker) -> None:
    for headers in ({}, {"Authorization": "Bearer monid_live_nope"}, {"Authorization": "Basic x"}):
        answer = requests.post(f"{stack.base_url}/mcp", headers=headers, data=b"not json",
                               timeout=10)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["errorCode"] == "UNAUTHORIZED"
        assert answer.headers["x-request-id"]
    with pytest.raises(Exception):  # noqa: B017 - the SDK's own error for a 401
        run(stack, "monid_live_" + "a" * 43, lambda c: c.list_tools())


def test_another_callers_run_is_not_found(stack: Stack, e2e_key: KeyMaker) -> None:
    mine = e2e_key("mcp_owner")
    other = e2e_key("mcp_other")
    started = run(stack, mine, lambda c: c.call_tool(
        "monid_run", {"provider": "demo", "endpoint": "/echo", "input": {}}))
    run_id = started.structured_content["runId"]  # type: ignore[index]
    for tool, args in (("monid_get_run", {"runId": run_id}),
                       ("monid_get_run_items", {"runId": run_id}),
                       ("monid_stop_run", {"runId": run_id})):
        got = run(stack, other, lambda c, t=tool, a=args: c.call_tool(t, a))  # type: ignore[misc]
        assert got.is_error
        assert got.structured_content == {"code": 404, "errorCode": "NOT_FOUND",
                                          "message": f"no run {run_id!r}"}
    rest = requests.get(f"{stack.base_url}/v1/runs/{run_id}", headers=auth(other), timeout=10)
    assert rest.json()["message"] == f"no run {run_id!r}"


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("monid_run", {"endpoint": "/echo", "input": {}}, "provider"),
    ("monid_run", {"provider": "demo", "endpoint": "/echo", "input": []}, "input"),
    ("monid_run", {"provider": "demo", "endpoint": "/echo", "input": {}, "wait": 61}, "wait"),
    ("monid_run", {"provider": "demo", "endpoint": "/echo", "input": {}, "wait": "soon"}, "wait"),
    ("monid_run", {"provider": "demo", "endpoint": "/echo", "input": {}, "extra": 1}, "extra"),
    ("monid_run", {"provider": 7, "endpoint": "/echo", "input": {}}, "provider"),
    ("monid_run", {"provider": "demo", "endpoint": "/sleep", "input": {"seconds": -1}},
     "input.seconds"),
    ("monid_discover", {"query": "   "}, "query"),
    ("monid_discover", {"query": "x" * 501}, "query"),
    ("monid_discover", {"query": "echo", "limit": "all"}, "limit"),
    ("monid_list_runs", {"limit": 0}, "limit"),
    ("monid_list_runs", {"status": "DONE"}, "status"),
    ("monid_list_runs", {"cursor": "not-a-cursor"}, "cursor"),
    ("monid_get_run", {"runId": None}, "runId"),
    ("monid_get_run", {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "wait": -1}, "wait"),
    ("monid_get_run_items", {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "fields": "a,,b"}, "fields"),
    ("monid_get_run_items", {"runId": "01JGXYZABCDEFGHJKMNPQRSTVW", "limit": 1001}, "limit"),
    ("monid_balance", {"workspaceId": 5}, "workspaceId"),
]


def test_malformed_tool_input_is_a_tool_error_naming_the_field(stack: Stack,
                                                               e2e_key: KeyMaker) -> None:
    key = e2e_key("mcp_hostile")

    async def work(c: Client) -> None:
        for tool, args, field in HOSTILE:
            got = await c.call_tool(tool, args)
            assert got.is_error, (tool, args)
            body = got.structured_content
            assert body is not None and body["errorCode"] == "VALIDATION_FAILED", (tool, body)
            assert field in body["errors"], (tool, args, body)
            assert "Traceback" not in got.content[0].text
        for tool, args, code in (
                ("monid_inspect", {"provider": "demo", "endpoint": "/nope"}, "ENDPOINT_NOT_FOUND"),
                ("monid_run", {"provider": "nope\x00", "endpoint": "/x", "input": {}},
                 "ENDPOINT_NOT_FOUND"),
                ("monid_get_run", {"runId": "../../etc/passwd"}, "NOT_FOUND"),
                ("monid_get_run", {"runId": "x" * 100}, "NOT_FOUND")):
            got = await c.call_tool(tool, args)
            assert got.is_error and got.structured_content["errorCode"] == code, got  # type: ignore[index]
        with pytest.raises(MCPError):  # an unknown tool is the protocol's error
            await c.call_tool("monid_delete_everything", {})

    run(stack, key, work)
    # Not MCP at all: the transport says so, with no stack trace.
    for body, headers in ((b"{not json", {}), (b"[]", {}),
                          (b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":7}', {}),
                          (b"x" * 300_000, {})):
        answer = requests.post(f"{stack.base_url}/mcp", data=body, timeout=10, headers={
            **auth(key), "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25", **headers})
        assert 400 <= answer.status_code < 500 or (
            answer.status_code == 200 and "error" in answer.json()), answer.text
        assert "Traceback" not in answer.text
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200


def test_fifty_concurrent_tool_calls(stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("mcp_many")

    async def main() -> list[Any]:
        async def one(n: int) -> Any:
            async with connect(stack.base_url, key) as c:
                return await c.call_tool("monid_run", {"provider": "demo", "endpoint": "/echo",
                                                       "input": {"n": n}, "wait": 30})
        return await asyncio.gather(*(one(n) for n in range(50)))

    results = asyncio.run(main())
    assert all(not r.is_error for r in results), [r.content for r in results if r.is_error]
    assert sorted(r.structured_content["output"]["n"] for r in results) == list(range(50))
    assert {r.structured_content["status"] for r in results} == {"COMPLETED"}
    assert requests.get(f"{stack.base_url}/healthz", timeout=5).status_code == 200


def test_a_client_of_an_earlier_revision_is_served(stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("mcp_legacy")

    async def work(c: Client) -> Any:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        return await c.call_tool("monid_balance", {})

    got = run(stack, key, work, mode="legacy")
    assert not got.is_error and "available" in got.structured_content  # type: ignore[operator]


def test_the_stdio_server_passes_the_tools_on(stack: Stack, e2e_key: KeyMaker) -> None:
    key = e2e_key("mcp_stdio")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "shared.cli", "mcp"], cwd=str(ROOT),
        env={**os.environ, "MONID_API_KEY": key, "MONID_API_BASE_URL": stack.base_url})

    async def main() -> None:
        async with Client(params) as c:
            assert {t.name for t in (await c.list_tools()).tools} == TOOLS
            done = await c.call_tool("monid_run", {"provider": "demo", "endpoint": "/echo",
                                                   "input": {"via": "stdio"}, "wait": 30})
            assert done.structured_content["output"] == {"via": "stdio"}  # type: ignore[index]
            missing = await c.call_tool("monid_get_run", {"runId": new_run_id()})
            assert missing.is_error
            assert missing.structured_content["errorCode"] == "NOT_FOUND"  # type: ignore[index]

    asyncio.run(main())
    refused = subprocess.run(
        [sys.executable, "-m", "shared.cli", "mcp"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "MONID_API_KEY": "monid_live_nope",
             "MONID_API_BASE_URL": stack.base_url})
    assert refused.returncode == 1 and "401" in refused.stderr


def test_monids_own_cli_says_who_the_key_is(stack: Stack, e2e_key: KeyMaker,
                                           tmp_path: Path) -> None:
    monid, env = monid_cli(tmp_path, e2e_key("mcp_cli"), stack.base_url)
    whoami = subprocess.run([monid, "whoami", "--json"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert whoami.returncode == 0, whoami.stderr
    said = json.loads(whoami.stdout)
    assert said["user"]["userId"] == "mcp_cli"
    assert said["workspace"]["slug"] == "mcp-cli"
    spaces = subprocess.run([monid, "whoami", "--workspaces", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(spaces.stdout)["workspaces"][0]["workspaceId"] == (
        said["workspace"]["workspaceId"])
