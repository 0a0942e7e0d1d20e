"""Endpoint health's thresholds and the hints answers carry, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import hints
from shared.catalog import Endpoint, Price
from shared.health import classify, summarize
from shared.ids import new_run_id, run_id_floor
from shared.store.health import EndpointRuns

RUN_ID = "01JGXYZABCDEFGHJKMNPQRSTVW"


def runs(judged: int, completed: int, *, recent_runs: int = 5, recent_failures: int = 0,
         p50: float | None = 1.0, p90: float | None = 2.0) -> EndpointRuns:
    return EndpointRuns(provider="demo", endpoint="/echo", judged_runs=judged,
                        completed_runs=completed, recent_runs=min(recent_runs, judged),
                        recent_failures=recent_failures, p50_seconds=p50, p90_seconds=p90)


@pytest.mark.parametrize(("judged", "completed", "recent_failures", "health"), [
    (0, 0, 0, "unknown"),
    (4, 4, 0, "unknown"),  # too few to say
    (4, 0, 4, "unknown"),
    (5, 5, 0, "healthy"),
    (100, 99, 0, "healthy"),  # 0.99
    (100, 98, 1, "stable"),
    (100, 95, 1, "stable"),  # 0.95
    (100, 94, 1, "degraded"),
    (100, 97, 3, "degraded"),  # 3 of the last 5 failed
    (100, 50, 2, "degraded"),  # 0.50
    (100, 49, 2, "outage"),
    (100, 95, 5, "outage"),  # the last 5 all failed: it just broke
    (5, 0, 5, "outage"),
])
def test_health_thresholds(judged: int, completed: int, recent_failures: int,
                           health: str) -> None:
    assert classify(runs(judged, completed, recent_failures=recent_failures)) == health


def test_a_summary_rounds_and_rates() -> None:
    row = summarize(runs(3, 2, p50=1.23456, p90=None))
    assert (row.health, row.p50_seconds, row.p90_seconds, row.success_rate) == \
        ("unknown", 1.235, None, 0.6667)
    assert row.window_hours == 24


def test_the_run_id_floor_bounds_runs_made_from_then_on() -> None:
    now = datetime.now(UTC)
    assert run_id_floor(now - timedelta(seconds=1)) < new_run_id()
    assert run_id_floor(now + timedelta(seconds=1)) > new_run_id()
    assert run_id_floor(datetime(1970, 1, 1, tzinfo=UTC)) == "0" * 26


def test_after_accept_says_how_to_wait_and_stop() -> None:
    assert hints.after_accept(RUN_ID) == {
        "wait for its end": {"kind": "getRun", "runId": RUN_ID, "wait": 30},
        "or over the API": f"GET /v1/runs/{RUN_ID}?wait=30",
        "stop it": {"kind": "stop", "runId": RUN_ID},
    }


def test_a_run_polled_while_running_says_how_to_wait() -> None:
    found = hints.for_run(RUN_ID, ended=False, status="RUNNING", output_truncated=False,
                          result_count=None)
    assert found["wait for its end"] == {"kind": "getRun", "runId": RUN_ID, "wait": 30}


def test_a_completed_run_with_a_large_result_gives_its_items_url() -> None:
    found = hints.for_run(RUN_ID, ended=True, status="COMPLETED", output_truncated=True,
                          result_count=2500)
    assert found["read every item"].startswith(f"GET /v1/runs/{RUN_ID}/items?limit=1000")
    assert "2500 items" in found["read every item"]
    assert f"/v1/runs/{RUN_ID}/items?format=jsonl" in found["or download them"]


@pytest.mark.parametrize(("status", "truncated"), [
    ("COMPLETED", False), ("FAILED", False), ("STOPPED", False), ("BLOCKED", False)])
def test_an_ended_run_that_holds_all_it_has_has_no_hints(status: str, truncated: bool) -> None:
    assert hints.for_run(RUN_ID, ended=True, status=status, output_truncated=truncated,
                         result_count=1) == {}


def test_a_402_says_how_to_add_credit() -> None:
    assert hints.top_up("user_abc123")["add credit"] == {
        "kind": "topup", "command": "monidctl wallet credit --user user_abc123 --amount 10.00"}
    assert "<userId>" in hints.top_up(None)["add credit"]["command"]


ECHO = Endpoint(provider="demo", provider_name="Demo", path="/echo", name="Echo",
                description="Echoes.", tags=(), input_schema={"type": "object"},
                query_params_schema=None, path_params_schema=None, price=Price("PER_CALL", 0),
                deadline_seconds=60, max_attempts=1, adapter="demo",
                example_input={"message": "hi"})


def test_discover_and_inspect_say_how_to_run_the_endpoint() -> None:
    run = {"kind": "run", "provider": "demo", "endpoint": "/echo", "input": {"message": "hi"}}
    assert hints.after_discover([ECHO], "echo") == {
        "inspect the best match": {"kind": "inspect", "provider": "demo", "endpoint": "/echo"},
        "run it": run}
    assert hints.after_inspect(ECHO)["run it"] == run
    assert hints.after_discover([], "nothing")["try other words"] == {
        "kind": "discover", "query": "nothing"}
