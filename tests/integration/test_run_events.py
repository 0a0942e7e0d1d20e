"""A run's live events (`GET /v1/runs/:runId/events`), on the real database: the events
of a run as it goes, the progress of a followed Apify actor run (against the fake
Apify), resuming with Last-Event-ID, the bounds on open streams, and the notifications
of migration 0021."""

from __future__ import annotations

import inspect
import itertools
import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from json import loads
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool
from werkzeug.wsgi import ClosingIterator

from api.app import create_app
from shared import store
from shared.catalog import load_catalog
from shared.db import connect, listen, transaction
from shared.settings import Settings, load_settings
from tests.fakes.apify import FakeApify
from tests.helpers import auth
from worker.providers import make_adapters
from worker.runner import Runner

CALLER = "USER#user_abc123"
CLOSED = "closed"


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None


def parse_frame(text: str) -> Frame:
    frame = Frame()
    for line in text.split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            frame.comment = value
        elif name == "id":
            frame.id = value
        elif name == "event":
            frame.event = value
        elif name == "data":
            frame.data = loads(value)
        elif name == "retry":
            frame.retry = int(value)
    return frame


@dataclass
class Stream:
    """A stream being read by a thread of its own, frame by frame."""

    response: Any
    frames: queue.Queue[Frame | str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.response:
                buffer += chunk.decode()
                while "\n\n" in buffer:
                    text, buffer = buffer.split("\n\n", 1)
                    self.frames.put(parse_frame(text))
        finally:
            self.response.close()
            self.frames.put(CLOSED)

    def next(self, timeout: float = 5.0, *, pings: bool = False) -> Frame | str:
        deadline = time.monotonic() + timeout
        while True:
            found = self.frames.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(found, str) or pings or found.comment is None:
                return found

    def events(self, until_closed: float = 5.0) -> list[Frame]:
        """Every event up to the stream's close."""
        found: list[Frame] = []
        while True:
            frame = self.next(until_closed)
            if frame == CLOSED:
                return found
            assert isinstance(frame, Frame)
            found.append(frame)

    def close(self) -> None:
        """What the server does when the client goes away: close the answer. From this
        thread only the response's own close is called (werkzeug's generators belong to
        the reading thread, which closes them once the stream has ended)."""
        server_close(self.response.response)
        self.events()  # the stream ends by itself


def server_close(iterator: Any) -> None:
    for callback in getattr(iterator, "_callbacks", ()):
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, ClosingIterator):
            server_close(owner)
        elif not inspect.isgenerator(owner):
            callback()


def event_settings(base_env: dict[str, str], **env: str) -> Settings:
    return load_settings({**base_env, "EVENT_STREAM_PING_SECONDS": "30", **env})


@pytest.fixture
def events_settings(base_env: dict[str, str]) -> Settings:
    return event_settings(base_env, EVENT_STREAMS_PER_CALLER="3", EVENT_STREAMS_PER_PROCESS="5")


@pytest.fixture
def events_app(events_settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(events_settings)
    yield app
    app.extensions["monid"].close()


@pytest.fixture
def web(events_app: Flask) -> FlaskClient:
    return events_app.test_client()


@pytest.fixture
def runner(events_settings: Settings, db: ConnectionPool) -> Runner:
    return Runner(settings=events_settings, pool=db,
                  catalog=load_catalog(events_settings.catalog_dir),
                  adapters=make_adapters(events_settings), publish=lambda *_: None, name="test")


def start(web: FlaskClient, key: str, endpoint: str, input: dict[str, Any]) -> str:
    answer = web.post("/v1/run", headers=auth(key),
                      json={"provider": "demo", "endpoint": endpoint, "input": input})
    assert answer.status_code == 202, answer.get_json()
    run_id: str = answer.get_json()["runId"]
    return run_id


def open_stream(web: FlaskClient, key: str, run_id: str, last: str | None = None) -> Stream:
    headers = {**auth(key), **({"Last-Event-ID": last} if last is not None else {})}
    response = web.get(f"/v1/runs/{run_id}/events", headers=headers, buffered=False)
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    return Stream(response)


def run_to_end(runner: Runner, web: FlaskClient, key: str, run_id: str) -> None:
    deadline = time.monotonic() + 20
    while web.get(f"/v1/runs/{run_id}", headers=auth(key)).get_json()["stoppable"]:
        assert time.monotonic() < deadline, "the run did not end"
        runner.run(run_id)
        time.sleep(0.05)


def ids(frames: list[Frame]) -> list[str | None]:
    return [f.id for f in frames]


def summary(frames: list[Frame]) -> list[tuple[Any, ...]]:
    """What each event says, in a word or two."""
    said: list[tuple[Any, ...]] = []
    for f in frames:
        if f.event == "status":
            said.append(("status", f.data["status"]))
        elif f.event == "attempt":
            said.append(("attempt", f.data["number"], f.data["outcome"]))
        elif f.event == "progress":
            said.append(("progress", f.data["message"]))
        else:
            said.append((f.event, f.data["status"]))
    return said


def ordered(event_ids: list[str | None]) -> bool:
    """Each ID names a later state than the one before: a status no earlier, an attempt
    (its number, then ended after started) no earlier, and one of them later."""
    parts = [tuple(int(p) for p in f"{i}.0".split(".")[:4]) for i in event_ids
             if i is not None]
    return all(x[0] <= y[0] and x[1:] <= y[1:] and x != y
               for x, y in itertools.pairwise(parts))


# --- a run followed from its accept to its end --------------------------------------------


def test_a_queued_run_that_takes_two_attempts_is_followed_to_its_end(
        web: FlaskClient, key: str, runner: Runner) -> None:
    run_id = start(web, key, "/fail", {"status": 503, "times": 1})
    stream = open_stream(web, key, run_id)
    first = stream.next(pings=True)
    assert isinstance(first, Frame)
    assert (first.retry, first.id, first.event, first.data) == (
        1000, "1.0.0", "status", {"runId": run_id, "status": "RUNNING", "stoppable": True})
    # Queued: nothing more until a worker takes it (the keep-alive is 30 s away).
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.3)

    runner.run(run_id)  # attempt 1: the provider answers 503, a retry is scheduled
    seen = [stream.next(timeout=3)]
    while isinstance(seen[-1], Frame) and seen[-1].id != "1.1.1":
        seen.append(stream.next(timeout=3))
    frames = [f for f in seen if isinstance(f, Frame)]
    # The start of the attempt is shown when the stream saw it in flight.
    assert ids(frames) in (["1.1.0", "1.1.1"], ["1.1.1"])
    ended = frames[-1].data
    assert ended["runId"] == run_id and ended["outcome"] == "TRANSIENT_ERROR"
    assert ended["httpStatus"] == 503 and ended["nextAttemptAt"] is not None

    run_to_end(runner, web, key, run_id)
    rest = stream.events()
    assert [f for f in rest if f.event == "attempt"][-1].id == "1.2.1"
    assert summary(rest)[-3:] == [("attempt", 2, "OK"), ("status", "COMPLETED"),
                                  ("end", "COMPLETED")]
    assert ids(rest)[-2:] == ["3.2.1", "4.2.1"]
    assert ordered(ids([first, *frames, *rest]))
    end = rest[-1].data
    assert end["runId"] == run_id and end["resultCount"] == 1
    assert [a["outcome"] for a in end["attempts"]] == ["TRANSIENT_ERROR", "OK"]
    assert "output" not in end and end["itemsUrl"] == f"/v1/runs/{run_id}/items"
    assert web.application.extensions["monid"].waiter.streams() == {}


def test_the_end_arrives_at_once_and_a_change_without_waiting_for_the_keep_alive(
        web: FlaskClient, key: str, runner: Runner) -> None:
    run_id = start(web, key, "/echo", {"message": "hi"})
    stream = open_stream(web, key, run_id)
    assert isinstance(first := stream.next(), Frame) and first.id == "1.0.0"
    began = time.monotonic()
    runner.run(run_id)
    frames = stream.events(until_closed=3)
    assert time.monotonic() - began < 2, "woken by the notification, not the keep-alive"
    assert summary(frames)[-3:] == [("attempt", 1, "OK"), ("status", "COMPLETED"),
                                    ("end", "COMPLETED")]


def test_a_stop_is_shown_then_the_stopped_end(web: FlaskClient, key: str,
                                              runner: Runner) -> None:
    run_id = start(web, key, "/sleep", {"seconds": 30})
    stream = open_stream(web, key, run_id)
    worker = threading.Thread(target=runner.run, args=(run_id,))
    worker.start()
    read = [stream.next(), stream.next(timeout=3)]
    frames = [f for f in read if isinstance(f, Frame)]
    assert summary(frames) == [("status", "RUNNING"), ("attempt", 1, None)]
    assert ids(frames) == ["1.0.0", "1.1.0"]
    assert web.post(f"/v1/runs/{run_id}/stop", headers=auth(key)).status_code == 202
    stopping = stream.next(timeout=3)
    assert isinstance(stopping, Frame) and stopping.id == "2.1.0"
    assert stopping.data == {"runId": run_id, "status": "STOPPING", "stoppable": True}
    stream.close()
    worker.join(timeout=10)
    # Ended since: a new stream after the last ID gets the rest only.
    rest = open_stream(web, key, run_id, last="2.1.0").events()
    assert summary(rest) == [("attempt", 1, "STOPPED"), ("status", "STOPPED"),
                             ("end", "STOPPED")]
    assert ids(rest) == ["2.1.1", "3.1.1", "4.1.1"]
    # From the beginning, the same story: the stop is part of it.
    assert summary(open_stream(web, key, run_id).events()) == [
        ("status", "RUNNING"), ("status", "STOPPING"), ("attempt", 1, "STOPPED"),
        ("status", "STOPPED"), ("end", "STOPPED")]


# --- resuming, and runs that have ended ---------------------------------------------------


@pytest.fixture
def two_attempts(web: FlaskClient, key: str, runner: Runner) -> str:
    run_id = start(web, key, "/fail", {"status": 503, "times": 1})
    run_to_end(runner, web, key, run_id)
    return run_id


def test_an_ended_run_answers_its_whole_story_and_its_end_at_once(
        web: FlaskClient, key: str, two_attempts: str) -> None:
    began = time.monotonic()
    frames = open_stream(web, key, two_attempts).events(until_closed=2)
    assert time.monotonic() - began < 1
    assert summary(frames) == [("status", "RUNNING"), ("attempt", 1, "TRANSIENT_ERROR"),
                               ("attempt", 2, "OK"), ("status", "COMPLETED"),
                               ("end", "COMPLETED")]
    assert ids(frames) == ["1.0.0", "1.1.1", "1.2.1", "3.2.1", "4.2.1"]


@pytest.mark.parametrize(("last", "expected"), [
    ("1.0.0", ["1.1.1", "1.2.1", "3.2.1", "4.2.1"]),
    ("1.1.0", ["1.1.1", "1.2.1", "3.2.1", "4.2.1"]),  # seen in flight: shown ended
    ("1.1.1", ["1.2.1", "3.2.1", "4.2.1"]),
    ("1.2.1", ["3.2.1", "4.2.1"]),
    ("3.2.1", ["4.2.1"]),
    (" 1.2.1 ", ["3.2.1", "4.2.1"]),
])
def test_last_event_id_resumes_after_what_was_seen(web: FlaskClient, key: str,
                                                   two_attempts: str, last: str,
                                                   expected: list[str]) -> None:
    assert ids(open_stream(web, key, two_attempts, last=last).events()) == expected


def test_the_end_seen_already_is_204_so_an_event_source_stops(
        web: FlaskClient, key: str, two_attempts: str) -> None:
    answer = web.get(f"/v1/runs/{two_attempts}/events",
                     headers={**auth(key), "Last-Event-ID": "4.2.1"})
    assert answer.status_code == 204 and answer.get_data() == b""
    by_query = web.get(f"/v1/runs/{two_attempts}/events?lastEventId=4.2.1", headers=auth(key))
    assert by_query.status_code == 204
    assert web.application.extensions["monid"].waiter.streams() == {}


@pytest.mark.parametrize("last", [
    "", "garbage", "5.0.0", "-1.0.0", "1.0", "1.0.0.0", "1.0.2", "1.x.1", "\u0663.\u0662.\u0661",
    "1.3.0",  # an attempt the run never made
    "1.0.1",  # attempt 0 cannot have ended
    "9" * 5000, "1." + "9" * 12 + ".1", "1.2.1; drop table runs",
])
def test_a_malformed_or_foreign_last_event_id_starts_from_the_beginning(
        web: FlaskClient, key: str, two_attempts: str, last: str) -> None:
    frames = open_stream(web, key, two_attempts, last=last).events()
    assert ids(frames) == ["1.0.0", "1.1.1", "1.2.1", "3.2.1", "4.2.1"]


def test_an_id_ahead_of_a_live_run_starts_it_again(web: FlaskClient, key: str) -> None:
    run_id = start(web, key, "/echo", {})
    for last in ("3.0.0", "4.0.0", "2.0.0", "1.1.0"):
        stream = open_stream(web, key, run_id, last=last)
        first = stream.next()
        assert isinstance(first, Frame) and first.id == "1.0.0", last
        stream.close()


# --- who may follow, and how many ---------------------------------------------------------


def test_another_callers_run_or_no_run_is_404_in_the_envelope(
        web: FlaskClient, key: str, make_key: Any) -> None:
    run_id = start(web, key, "/echo", {})
    other = make_key("user_other")
    for who, path in ((other, run_id), (key, "01JGXYZABCDEFGHJKMNPQRSTVW"),
                      (key, "not-a-run"), (key, "x" * 5000)):
        answer = web.get(f"/v1/runs/{path}/events", headers=auth(who))
        assert answer.status_code == 404
        assert answer.get_json()["errorCode"] == "NOT_FOUND"
    assert web.get(f"/v1/runs/{run_id}/events").status_code == 401
    assert web.application.extensions["monid"].waiter.streams() == {}


def test_streams_are_bounded_per_caller_then_per_process_with_a_429(
        web: FlaskClient, key: str, make_key: Any, events_app: Flask) -> None:
    waiter = events_app.extensions["monid"].waiter
    run_id = start(web, key, "/echo", {})
    mine = [open_stream(web, key, run_id) for _ in range(3)]
    over = web.get(f"/v1/runs/{run_id}/events", headers=auth(key))
    assert over.status_code == 429
    assert over.get_json()["errorCode"] == "RATE_LIMITED"
    assert "3 event streams" in over.get_json()["message"]
    assert over.headers["Retry-After"] == "1"
    assert waiter.streams() == {CALLER: 3}

    # Another caller still gets its own, up to the process's bound of 5.
    other = make_key("user_other")
    other_run = start(web, other, "/echo", {})
    theirs = [open_stream(web, other, other_run) for _ in range(2)]
    full = web.get(f"/v1/runs/{other_run}/events", headers=auth(other))
    assert full.status_code == 429 and "this server" in full.get_json()["message"]

    mine[0].close()  # a stream closed gives its slot back at once
    assert waiter.streams() == {CALLER: 2, "USER#user_other": 2}
    again = open_stream(web, key, run_id)
    for stream in [*mine[1:], *theirs, again]:
        stream.close()
    assert waiter.streams() == {}


def test_a_stream_never_read_or_asked_with_head_holds_no_slot(
        web: FlaskClient, key: str, events_app: Flask) -> None:
    waiter = events_app.extensions["monid"].waiter
    run_id = start(web, key, "/echo", {})
    for _ in range(5):
        response = web.get(f"/v1/runs/{run_id}/events", headers=auth(key), buffered=False)
        assert response.status_code == 200
        response.close()  # the client went away before a byte was sent
        head = web.head(f"/v1/runs/{run_id}/events", headers=auth(key))
        assert head.status_code == 200 and head.get_data() == b""
        head.close()
    assert waiter.streams() == {}


def test_streams_and_waits_share_the_threads_that_may_wait(
        base_env: dict[str, str], db: ConnectionPool, make_key: Any) -> None:
    # 12 threads: 4 may wait; streams may take up to 10 of them by their own bound.
    app = create_app(event_settings(base_env, WEB_THREADS="12", EVENT_STREAMS_PER_PROCESS="10",
                                    EVENT_STREAMS_PER_CALLER="10"))
    try:
        web = app.test_client()
        key = make_key()
        run_id = start(web, key, "/echo", {})
        streams = [open_stream(web, key, run_id) for _ in range(4)]
        assert web.get(f"/v1/runs/{run_id}/events", headers=auth(key)).status_code == 429
        began = time.monotonic()  # no slot left to wait in: the run as it is, at once
        assert web.get(f"/v1/runs/{run_id}?wait=5", headers=auth(key)).status_code == 200
        assert time.monotonic() - began < 1
        for stream in streams:
            stream.close()
    finally:
        app.extensions["monid"].close()


# --- keep-alive and the longest stream ---------------------------------------------------


def test_an_idle_stream_pings_then_closes_at_its_longest_for_the_client_to_resume(
        base_env: dict[str, str], db: ConnectionPool, make_key: Any) -> None:
    app = create_app(event_settings(base_env, EVENT_STREAM_PING_SECONDS="0.2",
                                    EVENT_STREAM_MAX_SECONDS="1.2"))
    try:
        web = app.test_client()
        key = make_key()
        run_id = start(web, key, "/echo", {})
        stream = open_stream(web, key, run_id)
        began = time.monotonic()
        frames: list[Frame] = []
        while (frame := stream.next(timeout=5, pings=True)) != CLOSED:
            assert isinstance(frame, Frame)
            frames.append(frame)
        lasted = time.monotonic() - began
        assert 1.0 < lasted < 3
        pings = [f for f in frames if f.comment == "ping"]
        assert len(pings) >= 3
        assert [f.id for f in frames if f.id] == ["1.0.0"]  # no end: the run goes on
        assert app.extensions["monid"].waiter.streams() == {}
    finally:
        app.extensions["monid"].close()


# --- the notifications of migration 0021 -------------------------------------------------


def notes_of(database_url: str, action: Any) -> list[tuple[str, str]]:
    """The notifications of both run channels while `action` runs."""
    with connect(database_url, autocommit=True) as conn:
        listen(conn, "monid_run_changed")
        listen(conn, "monid_run_ended")
        action()
        return [(n.channel, n.payload) for n in conn.notifies(timeout=0.5, stop_after=20)]


def test_only_watched_runs_notify_their_changes(settings: Settings, db: ConnectionPool,
                                                web: FlaskClient, key: str,
                                                runner: Runner) -> None:
    quiet = start(web, key, "/fail", {"status": 503, "times": 1})
    assert notes_of(settings.database_url, lambda: runner.run(quiet)) == []

    watched = start(web, key, "/fail", {"status": 503, "times": 1})
    stream = open_stream(web, key, watched)
    assert isinstance(stream.next(), Frame)
    with transaction(db) as conn:  # a lease renewed changes nothing a stream shows
        claim = store.claim_run(conn, watched, worker="w", lease_seconds=60)
    assert claim is not None
    renewed = notes_of(settings.database_url,
                       lambda: store_renew(db, claim.lease_token))  # type: ignore[union-attr]
    assert renewed == []
    stream.close()
    with transaction(db) as conn:
        store.end_unheld_run(conn, watched, status="STOPPED", error=None, outcome="STOPPED",
                             message="stopped")
    ended = notes_of(settings.database_url, lambda: None)
    assert ended == []  # already delivered when it committed
    with transaction(db) as conn:
        row = conn.execute("SELECT watched FROM runs WHERE id = %s", (watched,)).fetchone()
    assert row is not None and row["watched"] is True


def store_renew(db: ConnectionPool, token: Any) -> None:
    with transaction(db) as conn:
        store.renew_leases(conn, [token], 60)


def test_a_watched_runs_changes_are_notified_once_each(settings: Settings, db: ConnectionPool,
                                                       web: FlaskClient, key: str,
                                                       runner: Runner) -> None:
    run_id = start(web, key, "/fail", {"status": 503, "times": 1})
    stream = open_stream(web, key, run_id)
    assert isinstance(stream.next(), Frame)
    notes = notes_of(settings.database_url, lambda: runner.run(run_id))
    # The claim (a new attempt) and the retry scheduled: the run's other changes.
    assert notes == [("monid_run_changed", run_id), ("monid_run_changed", run_id)]
    stream.close()


def test_a_stream_whose_listener_lost_its_connection_still_gets_the_end(
        base_env: dict[str, str], db: ConnectionPool, make_key: Any) -> None:
    settings = event_settings(base_env, EVENT_STREAM_PING_SECONDS="1")
    app = create_app(settings)
    try:
        web = app.test_client()
        key = make_key()
        runner = Runner(settings=settings, pool=db, catalog=load_catalog(settings.catalog_dir),
                        adapters=make_adapters(settings), publish=lambda *_: None, name="t")
        run_id = start(web, key, "/echo", {})
        stream = open_stream(web, key, run_id)
        assert isinstance(stream.next(), Frame)
        # The database drops the listener's connection (a restart, a failover): the end
        # notified meanwhile is lost, and the stream reads its run again anyway.
        with transaction(db) as conn:
            dropped = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%%' "
                "AND pid <> pg_backend_pid()").fetchall()
        assert dropped
        runner.run(run_id)
        frames = stream.events(until_closed=5)
        assert summary(frames)[-2:] == [("status", "COMPLETED"), ("end", "COMPLETED")]
    finally:
        app.extensions["monid"].close()


# --- the progress of a followed provider job ----------------------------------------------


APIFY_TOKEN = "apify-test-token"
ACTOR = "apidojo~tweet-scraper"


@dataclass
class Followed:
    """A web app and a runner that follow actor runs of the fake Apify."""

    web: FlaskClient
    runner: Runner
    apify: FakeApify
    db: ConnectionPool
    database_url: str

    def start(self, key: str) -> str:
        answer = self.web.post("/v1/run", headers=auth(key), json={
            "provider": "apify", "endpoint": "/apidojo/tweet-scraper",
            "input": {"searchTerms": ["AI"]}})
        assert answer.status_code == 202, answer.get_json()
        run_id: str = answer.get_json()["runId"]
        return run_id

    def check(self, run_id: str) -> str:
        """The worker's next check of the run, now rather than when it is due."""
        with transaction(self.db) as conn:
            conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s", (run_id,))
        return self.runner.run(run_id)

    def kept(self, run_id: str) -> Any:
        with transaction(self.db) as conn:
            row = conn.execute("SELECT provider_state FROM runs WHERE id = %s",
                               (run_id,)).fetchone()
        assert row is not None
        return row["provider_state"]


@pytest.fixture
def followed(base_env: dict[str, str], db: ConnectionPool) -> Iterator[Followed]:
    with FakeApify(token=APIFY_TOKEN) as apify:
        settings = event_settings(base_env, APIFY_TOKEN=APIFY_TOKEN,
                                  APIFY_API_BASE_URL=apify.base_url)
        app = create_app(settings)
        with transaction(db) as conn:
            store.credit_wallet(conn, CALLER, 1_000_000, "tests")
        runner = Runner(settings=settings, pool=db, catalog=load_catalog(settings.catalog_dir),
                        adapters=make_adapters(settings), publish=lambda *_: None, name="t")
        apify.add_actor(ACTOR, items=[{"id": "1"}], run_seconds=120)
        try:
            yield Followed(app.test_client(), runner, apify, db, settings.database_url)
        finally:
            app.extensions["monid"].close()


def started(followed: Followed, run_id: str) -> str:
    """Take the run's first attempt (it starts an actor run) and wait until the actor
    run is RUNNING; its Apify ID."""
    assert followed.runner.run(run_id) == "following"
    actor_run = followed.apify.run(followed.kept(run_id)["actorRunId"])
    deadline = time.monotonic() + 3
    while actor_run.status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return actor_run.id


def test_a_followed_jobs_progress_is_sent_once_per_change_and_resumed_after_its_id(
        followed: Followed, key: str) -> None:
    run_id = followed.start(key)
    stream = open_stream(followed.web, key, run_id)
    assert isinstance(first := stream.next(), Frame) and first.id == "1.0.0"
    actor_run = started(followed, run_id)
    assert isinstance(begun := stream.next(timeout=3), Frame)
    assert (begun.id, begun.event) == ("1.1.0", "attempt")

    followed.apify.set_status_message(actor_run, "Crawled 1 of 3 pages")
    began = time.monotonic()
    assert followed.check(run_id) == "following"
    one = stream.next(timeout=3)
    # Woken by the check's notification (the keep-alive is 30 s away).
    assert time.monotonic() - began < 2
    assert isinstance(one, Frame) and (one.id, one.event) == ("1.1.0.1", "progress")
    assert one.data["runId"] == run_id and one.data["attempt"] == 1
    assert one.data["message"] == "Crawled 1 of 3 pages"
    assert one.data["at"].endswith("Z")
    kept = followed.kept(run_id)["progress"]
    assert (kept["n"], kept["message"]) == (1, "Crawled 1 of 3 pages")

    # A check that reads the same message says nothing new and counts nothing.
    assert followed.check(run_id) == "following"
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.5)
    assert followed.kept(run_id)["progress"] == kept

    followed.apify.set_status_message(actor_run, "Crawled 2 of 3 pages")
    assert followed.check(run_id) == "following"
    two = stream.next(timeout=3)
    assert isinstance(two, Frame) and (two.id, two.event) == ("1.1.0.2", "progress")
    assert two.data["message"] == "Crawled 2 of 3 pages"
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.3)
    stream.close()

    # A client that reconnects after the first message gets only the second; one that
    # saw only the attempt start (an ID of the older form), the last message.
    # An ID ahead of the run (a message not said yet; progress of an ended attempt)
    # starts the stream again.
    for last, expected in (("1.1.0.1", ["1.1.0.2"]), ("1.1.0", ["1.1.0.2"]),
                           ("1.1.0.3", ["1.0.0", "1.1.0", "1.1.0.2"]),
                           ("1.1.1.1", ["1.0.0", "1.1.0", "1.1.0.2"])):
        again = open_stream(followed.web, key, run_id, last=last)
        got: list[Frame] = []
        with suppress(queue.Empty):
            while isinstance(frame := again.next(timeout=0.4), Frame):
                got.append(frame)
        assert ids(got) == expected, last
        again.close()

    # The actor run ends: the attempt ends, then the run; no more progress.
    resumed = open_stream(followed.web, key, run_id, last="1.1.0.1")
    followed.apify.set_status(actor_run, "SUCCEEDED")
    assert followed.check(run_id) == "completed"
    rest = resumed.events()
    assert ids(rest) == ["1.1.0.2", "1.1.1", "3.1.1", "4.1.1"]
    assert summary(rest) == [("progress", "Crawled 2 of 3 pages"), ("attempt", 1, "OK"),
                             ("status", "COMPLETED"), ("end", "COMPLETED")]
    assert ordered(["1.0.0", "1.1.0", "1.1.0.1", *ids(rest)])
    whole = open_stream(followed.web, key, run_id).events()
    assert "progress" not in [f.event for f in whole]  # an ended attempt shows none
    assert followed.web.application.extensions["monid"].waiter.streams() == {}


def test_a_hostile_status_message_is_sent_cleaned_and_cut(followed: Followed,
                                                          key: str) -> None:
    run_id = followed.start(key)
    actor_run = started(followed, run_id)
    hostile = "\n\nid: 4.9.1\nevent: end\ndata: {}\n\n\x00\ud800" + "é" * 100_000
    followed.apify.set_status_message(actor_run, hostile)
    assert followed.check(run_id) == "following"
    frames: list[Frame] = []
    stream = open_stream(followed.web, key, run_id)
    with suppress(queue.Empty):
        while isinstance(frame := stream.next(timeout=0.5), Frame):
            frames.append(frame)
    stream.close()
    # The message cannot break the stream's framing: one event, its text in its JSON.
    assert ids(frames) == ["1.0.0", "1.1.0", "1.1.0.1"]
    message = frames[-1].data["message"]
    assert len(message) == 500 and message.startswith("id: 4.9.1\nevent: end")
    assert "\x00" not in message and message.endswith("é…")
    assert len(json.dumps(followed.kept(run_id), ensure_ascii=False)) < 1000


def test_a_check_of_a_watched_run_is_notified_and_one_of_an_unwatched_run_is_not(
        followed: Followed, key: str) -> None:
    quiet = followed.start(key)
    followed.apify.set_status_message(started(followed, quiet), "quietly")
    assert notes_of(followed.database_url, lambda: followed.check(quiet)) == []
    assert followed.kept(quiet)["progress"]["message"] == "quietly"

    watched = followed.start(key)
    stream = open_stream(followed.web, key, watched)
    assert isinstance(stream.next(), Frame)
    actor_run = started(followed, watched)
    followed.apify.set_status_message(actor_run, "loudly")
    # A check: its claim, then the state it keeps (the message with it) are notified.
    with transaction(followed.db) as conn:
        conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s", (watched,))
    notes = notes_of(followed.database_url, lambda: followed.runner.run(watched))
    assert notes == [("monid_run_changed", watched)] * 2
    assert followed.kept(watched)["progress"]["message"] == "loudly"
    # The write that keeps the state (follow_run) is notified by itself: it also sets
    # when the next check is due, which the trigger of migration 0021 watches.
    with transaction(followed.db) as conn:
        conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s", (watched,))
        claim = store.claim_run(conn, watched, worker="w", lease_seconds=60)
    assert claim is not None and claim.provider_state["progress"]["n"] == 1

    def keep() -> None:
        state = {**claim.provider_state,
                 "progress": {**claim.provider_state["progress"], "n": 2, "message": "x"}}
        with transaction(followed.db) as conn:
            assert store.follow_run(conn, claim, state, 5.0, published=False) is not None

    assert notes_of(followed.database_url, keep) == [("monid_run_changed", watched)]
    frames = [stream.next(timeout=3)]
    while isinstance(frames[-1], Frame) and frames[-1].id != "1.1.0.2":
        frames.append(stream.next(timeout=3))
    assert [(f.id, f.event) for f in frames if isinstance(f, Frame)] == [
        ("1.1.0", "attempt"), ("1.1.0.1", "progress"), ("1.1.0.2", "progress")]
    assert [f.data["message"] for f in frames[1:] if isinstance(f, Frame)] == ["loudly", "x"]
    stream.close()
