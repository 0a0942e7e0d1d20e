"""Hints for agents: the next thing to try, carried by answers as `hints`, an object
from a short phrase to a string or to `{"kind": "command"|"discover"|"inspect"|"run"|
"getRun"|"stop"|"topup", ...}` (the shape BLOCKED runs' hints have, see
`shared.controls.blocked_hints`).

Every hint is made from what the answer already holds: none costs a query, and the
accept's (`after_accept`) is a few constant strings around the run's ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.catalog import Endpoint

Hints = dict[str, Any]
POLL_WAIT_SECONDS = 30


def after_accept(run_id: str) -> Hints:
    """After a 202: how to wait for the run's end, and how to stop it."""
    return {
        "wait for its end": {"kind": "getRun", "runId": run_id, "wait": POLL_WAIT_SECONDS},
        "or over the API": f"GET /v1/runs/{run_id}?wait={POLL_WAIT_SECONDS}",
        "stop it": {"kind": "stop", "runId": run_id},
    }


def for_run(run_id: str, *, ended: bool, status: str, output_truncated: bool,
            result_count: int | None) -> Hints:
    """A run as polled: how to wait while it has not ended; where all its items are when
    it COMPLETED with more than `output` holds."""
    if not ended:
        return {
            "wait for its end": {"kind": "getRun", "runId": run_id,
                                 "wait": POLL_WAIT_SECONDS},
            "or over the API": f"GET /v1/runs/{run_id}?wait={POLL_WAIT_SECONDS}",
        }
    if status == "COMPLETED" and output_truncated:
        return {
            "read every item": f"GET /v1/runs/{run_id}/items?limit=1000 pages through all "
                               f"{result_count if result_count is not None else 'its'} items "
                               "(cursor to cursor)",
            "or download them": f"GET /v1/runs/{run_id}/items?format=jsonl (or format=csv)",
            "over MCP": f"monid_get_run_items with runId {run_id}",
        }
    return {}


def top_up(user_id: str | None) -> Hints:
    """On a 402: how to add credit, and how to see what is available."""
    who = user_id or "<userId>"
    return {
        "add credit": {"kind": "topup",
                       "command": f"monidctl wallet credit --user {who} --amount 10.00"},
        "see what is available": "GET /v1/balance",
    }


def _run_hint(entry: Endpoint) -> dict[str, Any]:
    return {"kind": "run", "provider": entry.provider, "endpoint": entry.path,
            "input": entry.example_input if entry.example_input is not None else {}}


def after_discover(entries: Sequence[Endpoint], query: str) -> Hints:
    """After discover: inspect the best match for its input schema, then run it."""
    if not entries:
        return {
            "try other words": {"kind": "discover", "query": query},
            "or list every endpoint": "GET /v1/endpoints",
        }
    best = entries[0]
    return {
        "inspect the best match": {"kind": "inspect", "provider": best.provider,
                                   "endpoint": best.path},
        "run it": _run_hint(best),
    }


def after_inspect(entry: Endpoint) -> Hints:
    """After inspect: how to run the endpoint (with its example input)."""
    return {
        "run it": _run_hint(entry),
        "or over the API": f"POST /v1/run with {{\"provider\": \"{entry.provider}\", "
                           f"\"endpoint\": \"{entry.path}\", \"input\": {{...}}}} "
                           "(the input as inputSchema says)",
    }
