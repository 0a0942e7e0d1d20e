"""A log line carries the run ID of the run it is about, and no other: one thread
serves request after request (and task after task), and none inherits the IDs of
the one before."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared.logs import JsonFormatter, run_id_var
from shared.settings import Settings
from tests.helpers import CATALOG, auth, insert_demo_run
from worker.providers import make_adapters
from worker.runner import Runner


class JsonLines(logging.Handler):
    """Every record, formatted as the processes write it."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    logger = logging.getLogger("monid")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def request_lines(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["msg"] == "request"]


def test_requests_after_a_run_carry_no_run_id(client: FlaskClient, key: str,
                                              lines: JsonLines) -> None:
    accepted = client.post("/v1/run", headers=auth(key),
                           json={"provider": "demo", "endpoint": "/echo", "input": {}})
    assert accepted.status_code == 202
    run_id = accepted.get_json()["runId"]
    # The same thread (the test client's) serves each of these in turn.
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/v1/runs", headers=auth(key)).status_code == 200
    assert client.get("/v1/runs").status_code == 401
    assert client.get("/v1/wallet/balance", headers=auth("monid_live_" + "x" * 32)
                      ).status_code == 401
    first, *later = request_lines(lines.entries)
    assert first["runId"] == run_id and first["status"] == 202
    assert any(e["msg"] == "run accepted" and e["runId"] == run_id for e in lines.entries)
    assert [e["status"] for e in later] == [200, 404, 200, 401, 401]
    assert all("runId" not in e for e in later), later
    assert len({e["requestId"] for e in request_lines(lines.entries)}) == 6


def test_a_request_about_a_run_carries_that_run_only(client: FlaskClient, key: str,
                                                     lines: JsonLines) -> None:
    run_ids = []
    for _ in range(2):
        answer = client.post("/v1/run", headers=auth(key),
                             json={"provider": "demo", "endpoint": "/echo", "input": {}})
        run_ids.append(answer.get_json()["runId"])
    first, second = run_ids
    assert client.get(f"/v1/runs/{first}", headers=auth(key)).status_code == 200
    assert client.get("/v1/runs/not-a-run-id", headers=auth(key)).status_code == 404
    assert client.post(f"/v1/runs/{second}/stop", headers=auth(key)).status_code == 202
    assert client.get("/readyz").status_code == 200
    entries = request_lines(lines.entries)[2:]
    assert [e.get("runId") for e in entries] == [first, None, second, None]


def test_the_request_id_is_not_inherited_either(client: FlaskClient, lines: JsonLines) -> None:
    client.get("/healthz", headers={"x-request-id": "trace-one"})
    client.get("/healthz")
    one, two = request_lines(lines.entries)
    assert one["requestId"] == "trace-one"
    assert two["requestId"] != "trace-one"


def test_a_task_carries_its_run_id_and_leaves_none_behind(settings: Settings,
                                                          db: ConnectionPool,
                                                          lines: JsonLines) -> None:
    # As in a worker thread that has run nothing yet: a test run before this one in the
    # same process may have accepted a run through the service, which leaves its ID set.
    run_id_var.set(None)
    runner = Runner(settings=settings, pool=db, catalog=CATALOG, adapters=make_adapters(settings),
                    publish=lambda *_: None, name="test")
    first = insert_demo_run(db, "/echo", {"n": 1})
    second = insert_demo_run(db, "/echo", {"n": 2})
    assert runner.run(first) == "completed"
    assert run_id_var.get() is None
    logging.getLogger("monid.worker").info("between tasks")
    assert runner.run(second) == "completed"
    assert runner.run(second) == "skipped"  # a second delivery: nothing to claim
    by_message = [(e["msg"], e.get("runId")) for e in lines.entries]
    assert ("between tasks", None) in by_message
    assert by_message.count(("run ended", first)) == 1
    assert by_message.count(("run ended", second)) == 1
    assert ("nothing to claim", second) in by_message
