"""The MCP tools in process, on the real database and Redis: the rate limit and the
cap on runs in flight apply to them as to REST, and errors carry the REST table's
errorCode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from psycopg_pool import ConnectionPool

from api.app import create_app
from api.mcp_server import McpTools, tool_error
from api.mcp_tools import BY_NAME
from shared import errors
from shared.callers import Caller
from shared.db import autocommit
from shared.settings import Settings, load_settings
from tests.helpers import KeyMaker


@pytest.fixture
def limited(base_env: dict[str, str], db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(load_settings({**base_env, "RATE_LIMIT_PER_MINUTE": "3",
                                    "MAX_RUNS_IN_FLIGHT": "1"}))
    yield app
    app.extensions["monid.mcp"].close()
    app.extensions["monid"].close()


def _caller(pool: ConnectionPool, make_key: KeyMaker, user: str) -> Caller:
    make_key(user)
    with autocommit(pool) as conn:
        row = conn.execute("SELECT id FROM api_keys WHERE user_id = %s", (user,)).fetchone()
    assert row is not None
    return Caller(caller=f"USER#{user}", api_key_id=row["id"])


def _call(app: Flask, caller: Caller, tool: str, args: dict[str, Any]) -> Any:
    tools = McpTools(app, app.extensions["monid"])
    return tools._call(BY_NAME[tool], caller, args, "test-request")


def test_the_rate_limit_counts_tool_calls(limited: Flask, db: ConnectionPool,
                                          make_key: KeyMaker, clock: list[float]) -> None:
    caller = _caller(db, make_key, "mcp_rate")
    answers = [_call(limited, caller, "monid_balance", {}) for _ in range(4)]
    assert [a.is_error for a in answers] == [False, False, False, True]
    refused = answers[-1].structured_content
    assert refused["errorCode"] == "RATE_LIMITED" and refused["code"] == 429
    assert "requests a minute" in refused["message"]


def test_the_cap_on_runs_in_flight_applies(limited: Flask, db: ConnectionPool,
                                           make_key: KeyMaker) -> None:
    caller = _caller(db, make_key, "mcp_cap")
    run = {"provider": "demo", "endpoint": "/sleep", "input": {"seconds": 5}}
    first = _call(limited, caller, "monid_run", run)
    assert not first.is_error, first.content
    second = _call(limited, caller, "monid_run", run)
    assert second.is_error and second.structured_content["errorCode"] == "RATE_LIMITED"
    assert "runs in flight" in second.structured_content["message"]


def test_errors_are_the_rest_tables(settings: Settings) -> None:
    result, code = tool_error(errors.InsufficientFunds("the wallet cannot cover this run"))
    assert code == "WALLET_INSUFFICIENT_FUNDS" and result.is_error
    assert result.structured_content == {"code": 402, "errorCode": "WALLET_INSUFFICIENT_FUNDS",
                                         "message": "the wallet cannot cover this run"}
    result, code = tool_error(RuntimeError("secret=hunter2 at /srv/app.py line 3"))
    assert code == "INTERNAL"
    assert result.content[0].text == "INTERNAL: internal error"  # type: ignore[union-attr]
    assert "hunter2" not in str(result.model_dump())
