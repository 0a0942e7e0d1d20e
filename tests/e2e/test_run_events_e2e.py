"""A run's live events through real gunicorn and celery processes, read by an SSE client
of its own (httpx-sse): followed to the end, resumed after a dropped connection, and 50
streams open at once without a database connection each."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from psycopg_pool import ConnectionPool

from shared.db import transaction
from tests.helpers import KeyMaker
from tests.processes import Process, start_web, start_worker

APP_NAME = "monid-web-events-e2e"


@pytest.fixture(scope="module")
def events_stack(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[str, Process]]:
    log_dir = tmp_path_factory.mktemp("events")
    env = {**base_env, "WEB_CONCURRENCY": "1", "WEB_THREADS": "128", "DB_POOL_SIZE": "3",
           "EVENT_STREAMS_PER_PROCESS": "60", "EVENT_STREAMS_PER_CALLER": "60",
           "PGAPPNAME": APP_NAME}
    web, base_url = start_web(env, log_dir)
    worker = start_worker(base_env, log_dir, concurrency=8)
    yield base_url, web
    worker.stop()
    web.stop()


def start(base_url: str, key: str, endpoint: str, input: dict[str, Any]) -> str:
    answer = httpx.post(f"{base_url}/v1/run", headers={"Authorization": f"Bearer {key}"},
                        json={"provider": "demo", "endpoint": endpoint, "input": input},
                        timeout=10)
    assert answer.status_code == 202, answer.text
    run_id: str = answer.json()["runId"]
    return run_id


def follow(base_url: str, key: str, run_id: str, *, last: str | None = None,
           stop_after: int | None = None) -> list[tuple[ServerSentEvent, float]]:
    """The events of one connection (and when each came), up to the stream's close or
    `stop_after` events, after which the client drops the connection."""
    headers = {"Authorization": f"Bearer {key}", **({"Last-Event-ID": last} if last else {})}
    got: list[tuple[ServerSentEvent, float]] = []
    with httpx.Client(timeout=httpx.Timeout(10, read=40)) as client, \
            connect_sse(client, "GET", f"{base_url}/v1/runs/{run_id}/events",
                        headers=headers) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            got.append((sse, time.time()))
            if stop_after is not None and len(got) >= stop_after:
                break
    return got


def positions(events: list[ServerSentEvent]) -> list[tuple[int, ...]]:
    return [tuple(int(p) for p in e.id.split(".")) for e in events]


def test_a_run_is_followed_to_its_end_and_the_end_comes_at_once(
        events_stack: tuple[str, Process], e2e_key: KeyMaker) -> None:
    base_url, _ = events_stack
    key = e2e_key("user_events_follow")
    run_id = start(base_url, key, "/fail", {"status": 503, "times": 1})
    got = follow(base_url, key, run_id)
    events = [e for e, _ in got]
    kinds = [(e.event, e.json().get("status") or e.json().get("outcome")) for e in events]
    assert kinds[0] == ("status", "RUNNING")
    ended_attempts = [e.json() for e in events if e.event == "attempt" and e.json()["endedAt"]]
    assert [(a["number"], a["outcome"]) for a in ended_attempts] == [
        (1, "TRANSIENT_ERROR"), (2, "OK")]
    assert kinds[-2:] == [("status", "COMPLETED"), ("end", "COMPLETED")]
    assert len({e.id for e in events}) == len(events)  # no event twice
    end = events[-1].json()
    assert end["runId"] == run_id and "output" not in end
    # The end reaches the client promptly after the run's end was written.
    completed = datetime.fromisoformat(end["completedAt"].replace("Z", "+00:00")).timestamp()
    assert got[-1][1] - completed < 1.0


def test_a_dropped_connection_resumes_with_last_event_id_without_gaps_or_repeats(
        events_stack: tuple[str, Process], e2e_key: KeyMaker) -> None:
    base_url, _ = events_stack
    key = e2e_key("user_events_resume")
    run_id = start(base_url, key, "/fail", {"status": 503, "times": 2})
    first = [e for e, _ in follow(base_url, key, run_id, stop_after=2)]  # then drops
    assert first[0].id == "1.0.0" and first[0].retry == 1000
    rest = [e for e, _ in follow(base_url, key, run_id, last=first[-1].id)]
    together = first + rest
    assert rest[-1].event == "end"
    steps = positions(together)
    assert all(a[0] <= b[0] and a[1:] <= b[1:] and a != b
               for a, b in itertools.pairwise(steps)), steps
    # Nothing missing: every attempt the run made is shown ended, exactly once, and
    # the story is the one a client that never dropped gets.
    run = httpx.get(f"{base_url}/v1/runs/{run_id}", headers={"Authorization": f"Bearer {key}"},
                    timeout=10).json()
    ended = [e.json()["number"] for e in together if e.event == "attempt" and e.json()["endedAt"]]
    assert ended == [a["number"] for a in run["attempts"]] == [1, 2, 3]
    whole = [e for e, _ in follow(base_url, key, run_id)]
    assert [e.id for e in whole] == ["1.0.0", "1.1.1", "1.2.1", "1.3.1", "3.3.1", "4.3.1"]
    assert {e.id for e in whole} <= {e.id for e in together}
    assert [e.event for e in together if e.event != "attempt"] == ["status", "status", "end"]


def web_connections(pool: ConnectionPool) -> list[str]:
    with transaction(pool) as conn:
        rows = conn.execute("SELECT state FROM pg_stat_activity WHERE application_name = %s",
                            (APP_NAME,)).fetchall()
    return [r["state"] for r in rows]


def test_50_open_streams_hold_no_database_connection(
        events_stack: tuple[str, Process], e2e_key: KeyMaker, pool: ConnectionPool) -> None:
    base_url, _ = events_stack
    key = e2e_key("user_events_many")
    headers = {"Authorization": f"Bearer {key}"}
    # Runs that never end while the streams are open: nothing will take them.
    runs = [start(base_url, key, "/sleep", {"seconds": 30}) for _ in range(4)]
    opened = threading.Barrier(51)
    release = threading.Event()
    failures: list[BaseException] = []

    def hold(run_id: str) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=60)) as client, \
                    connect_sse(client, "GET", f"{base_url}/v1/runs/{run_id}/events",
                                headers=headers) as source:
                assert source.response.status_code == 200, source.response.read()
                first = next(source.iter_sse())
                assert first.event == "status"
                opened.wait(timeout=60)
                release.wait(timeout=60)
        except BaseException as exc:  # reported by the test's own thread
            failures.append(exc)
            opened.abort()

    threads = [threading.Thread(target=hold, args=(runs[n % 4],), daemon=True)
               for n in range(50)]
    for thread in threads:
        thread.start()
    try:
        opened.wait(timeout=60)
        states = web_connections(pool)
        # The pool (3) and the listener, whatever the number of streams; none busy.
        assert len(states) <= 4, states
        assert "idle in transaction" not in states
        # Other requests still get a connection at once.
        began = time.monotonic()
        answer = httpx.get(f"{base_url}/v1/runs/{runs[1]}", headers=headers, timeout=5)
        assert answer.status_code == 200 and time.monotonic() - began < 1.0
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
        for run_id in runs:
            httpx.post(f"{base_url}/v1/runs/{run_id}/stop", headers=headers, timeout=10)
    assert failures == []


def test_errors_come_in_the_envelope_before_any_stream(
        events_stack: tuple[str, Process], e2e_key: KeyMaker) -> None:
    base_url, _ = events_stack
    key = e2e_key("user_events_errors")
    other = e2e_key("user_events_other")
    run_id = start(base_url, key, "/echo", {})
    answer = httpx.get(f"{base_url}/v1/runs/{run_id}/events",
                       headers={"Authorization": f"Bearer {other}"}, timeout=5)
    assert answer.status_code == 404 and answer.json()["errorCode"] == "NOT_FOUND"
    assert httpx.get(f"{base_url}/v1/runs/{run_id}/events", timeout=5).status_code == 401


def test_a_web_process_told_to_stop_ends_its_streams_at_once(
        base_env: dict[str, str], e2e_key: KeyMaker, tmp_path_factory: pytest.TempPathFactory,
        events_stack: tuple[str, Process]) -> None:
    web, base_url = start_web({**base_env, "WEB_CONCURRENCY": "1"},
                              tmp_path_factory.mktemp("stopping"))
    try:
        key = e2e_key("user_events_shutdown")
        run_id = start(base_url, key, "/sleep", {"seconds": 30})  # does not end meanwhile
        got: list[ServerSentEvent] = []
        first = threading.Event()

        def read() -> None:
            with httpx.Client(timeout=httpx.Timeout(10, read=60)) as client, \
                    connect_sse(client, "GET", f"{base_url}/v1/runs/{run_id}/events",
                                headers={"Authorization": f"Bearer {key}"}) as source:
                for sse in source.iter_sse():
                    got.append(sse)
                    first.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(timeout=10)
        asked = time.monotonic()
        code = web.stop(timeout=20)
        stopped = time.monotonic() - asked
        reader.join(timeout=10)
        assert not reader.is_alive()
        # Well before gunicorn's graceful timeout (25 s): the stream did not hold it.
        assert stopped < 10, (stopped, code)
        # No end: the client resumes elsewhere with Last-Event-ID.
        assert got[0].id == "1.0.0" and "end" not in [e.event for e in got]
    finally:
        httpx.post(f"{events_stack[0]}/v1/runs/{run_id}/stop", timeout=5,
                   headers={"Authorization": f"Bearer {key}"})
        if web.alive():
            web.stop()
