"""Accepts of a process's threads written together (shared/accepts.py): the runs
handed in while a write is under way go in one transaction; each thread still gets
its own answer (stored, or refused for its cap, its wallet or its controls); a run
that spoils its group fails alone; and two processes writing groups for the same
callers at once neither deadlock nor take a caller past its cap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from shared import store
from shared.accepts import WRITERS, Accepts
from shared.catalog import Endpoint
from shared.db import autocommit, make_pool, transaction
from shared.ids import new_run_id
from shared.settings import Settings

GATE = "USER#accept-gate"


@pytest.fixture
def make_accepts(settings: Settings, db: ConnectionPool) -> Iterator[Callable[[], Accepts]]:
    """Accepts of a process of their own (a pool each, as each web process has)."""
    pools: list[ConnectionPool] = []

    def make() -> Accepts:
        pool = make_pool(settings.database_url, max_size=4, name=f"tests-accepts-{len(pools)}")
        pool.open(wait=True)
        pools.append(pool)
        return Accepts(pool)

    yield make
    for pool in pools:
        pool.close()


def _params(endpoint: Endpoint, caller: str, **over: Any) -> dict[str, Any]:
    return store.run_params(run_id=new_run_id(), caller=caller, api_key_id=None,
                            endpoint=endpoint, input={"caller": caller}, **over)


def _fund(db: ConnectionPool, caller: str, micros: int) -> None:
    with transaction(db) as conn:
        store.credit_wallet(conn, caller, micros, "test funds")


def _answer(accepts: Accepts, params: dict[str, Any]) -> datetime | Exception:
    try:
        return accepts.insert(params)
    except Exception as exc:
        return exc


def _in_one_group(db: ConnectionPool, accepts: Accepts, endpoint: Endpoint,
                  batch: list[dict[str, Any]]) -> list[datetime | Exception]:
    """Hand `batch` in while every writer is busy (each with a run of a gate caller's
    that waits for its wallet, locked here), so that they are written together; their
    answers. One writer is freed first and takes them all in its next write; the
    others after it has (freed at once, two could each take a part of them)."""
    gates = [f"{GATE}-{n}" for n in range(WRITERS)]
    for gate in gates:
        _fund(db, gate, 10)
    answers: list[datetime | Exception | None] = [None] * len(batch)
    with ExitStack() as stack:
        locks = []
        for gate in gates:
            conn = stack.enter_context(autocommit(db))
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM wallets WHERE caller = %s FOR UPDATE", (gate,))
            locks.append(conn)
        held = [threading.Thread(target=_answer,
                                 args=(accepts, _params(endpoint, gate, hold_micros=1)))
                for gate in gates]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 10
        while accepts.group.parts < WRITERS and time.monotonic() < deadline:
            time.sleep(0.005)

        def hand_in(i: int) -> None:
            answers[i] = _answer(accepts, batch[i])

        threads = [threading.Thread(target=hand_in, args=(i,)) for i in range(len(batch))]
        for thread in threads:
            thread.start()
        while accepts.group.waiting < len(batch) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert accepts.group.waiting == len(batch)
        locks[0].execute("COMMIT")
        while accepts.group.waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        for conn in locks[1:]:
            conn.execute("COMMIT")
    for thread in held + threads:
        thread.join(10)
    assert (accepts.group.writes, accepts.group.parts) == (WRITERS + 1, len(batch) + WRITERS)
    return [a for a in answers if a is not None]


def _stored(db: ConnectionPool, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    with autocommit(db) as conn:
        rows = conn.execute("SELECT id, caller, status, hold_micros, inflight_slot, created_at"
                            " FROM runs WHERE id = ANY(%s)", (run_ids,)).fetchall()
    return {row["id"]: row for row in rows}


def test_the_accepts_handed_in_during_a_write_go_in_one_transaction_each_with_its_answer(
        db: ConnectionPool, make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    _fund(db, "USER#rich", 1_000)
    batch = (
        [_params(echo, "USER#rich", hold_micros=100) for _ in range(6)]
        + [_params(echo, "USER#poor", hold_micros=100)]  # no wallet: refused
        + [_params(echo, "USER#capped", in_flight_cap=2) for _ in range(3)]  # one too many
        + [_params(echo, "USER#free") for _ in range(8)]
    )
    accepts = make_accepts()
    answers = _in_one_group(db, accepts, echo, batch)

    stored = _stored(db, [p["id"] for p in batch])
    for params, answer in zip(batch, answers, strict=True):
        if params["caller"] == "USER#poor":
            assert isinstance(answer, store.InsufficientFunds)
            assert params["id"] not in stored
        elif params["caller"] != "USER#capped":
            assert isinstance(answer, datetime)
            assert stored[params["id"]]["created_at"] == answer
            assert stored[params["id"]]["status"] == "RUNNING"
    capped = [a for p, a in zip(batch, answers, strict=True) if p["caller"] == "USER#capped"]
    assert sum(isinstance(a, datetime) for a in capped) == 2
    assert sum(isinstance(a, store.TooManyRunsInFlight) for a in capped) == 1
    assert sorted(r["inflight_slot"] for r in stored.values()
                  if r["caller"] == "USER#capped") == [0, 1]
    # One transaction: one now() for every run it stored.
    assert len({r["created_at"] for r in stored.values()}) == 1
    assert accepts.alone == 0
    with autocommit(db) as conn:
        wallet = store.get_wallet(conn, "USER#rich")
        holds = conn.execute("SELECT count(*) AS n FROM ledger_entries"
                             " WHERE caller = 'USER#rich' AND kind = 'HOLD'").fetchone()
    assert wallet is not None and wallet.held_micros == 600
    assert holds is not None and holds["n"] == 6


def test_a_run_that_spoils_its_group_fails_alone_and_the_others_are_stored(
        db: ConnectionPool, make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    batch = [_params(echo, f"USER#spoil-{i}") for i in range(5)]
    # A queue limit past the last timestamp PostgreSQL knows: its statement fails.
    batch.insert(2, _params(echo, "USER#spoil-x", queue_timeout_seconds=10**15))
    accepts = make_accepts()
    answers = _in_one_group(db, accepts, echo, batch)

    assert isinstance(answers[2], psycopg.DataError), answers[2]
    stored = _stored(db, [p["id"] for p in batch])
    assert set(stored) == {p["id"] for i, p in enumerate(batch) if i != 2}
    assert all(isinstance(a, datetime) for i, a in enumerate(answers) if i != 2)
    assert accepts.alone == len(batch)


def _accept_from(processes: list[Accepts], threads: int,
                 make_params: Callable[[int, int], dict[str, Any]], *, each: int = 5
                 ) -> list[tuple[dict[str, Any], datetime | Exception]]:
    """`threads` threads in each process, each accepting what `make_params(process,
    thread)` gives it, `each` times, all at once."""
    done: list[tuple[dict[str, Any], datetime | Exception]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads * len(processes))

    def accept(p: int, t: int) -> None:
        start.wait()
        for _ in range(each):
            params = make_params(p, t)
            answer = _answer(processes[p], params)
            with lock:
                done.append((params, answer))

    workers = [threading.Thread(target=accept, args=(p, t))
               for p in range(len(processes)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return done


def test_two_processes_writing_groups_for_the_same_callers_never_deadlock(
        db: ConnectionPool, make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    callers = ["USER#lock-a", "USER#lock-b", "USER#lock-c"]
    for caller in callers:
        _fund(db, caller, 10**9)
    processes = [make_accepts(), make_accepts()]

    def params(p: int, t: int) -> dict[str, Any]:
        # Each thread goes through the callers in its own order.
        order = callers if (p + t) % 2 else callers[::-1]
        return _params(echo, order[int(time.monotonic_ns()) % 3], hold_micros=7)

    done = _accept_from(processes, 12, params, each=10)

    assert len(done) == 240
    assert [a for _, a in done if not isinstance(a, datetime)] == []
    # Groups were written (else this shows nothing), and none failed for a deadlock.
    assert all(p.group.writes < p.group.parts for p in processes)
    assert [p.alone for p in processes] == [0, 0]
    with autocommit(db) as conn:
        held = conn.execute("SELECT sum(held_micros) AS held FROM wallets"
                            " WHERE caller = ANY(%s)", (callers,)).fetchone()
    assert held is not None and held["held"] == 240 * 7


def test_two_processes_writing_groups_never_take_a_caller_past_its_cap(
        db: ConnectionPool, make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    processes = [make_accepts(), make_accepts()]
    done = _accept_from(processes, 12,
                        lambda p, t: _params(echo, "USER#cap-race", in_flight_cap=30))

    stored = [a for _, a in done if isinstance(a, datetime)]
    refused = [a for _, a in done if isinstance(a, store.TooManyRunsInFlight)]
    assert (len(stored), len(refused)) == (30, 90), [a for _, a in done
                                                     if not isinstance(a, datetime)][:3]
    assert all(p.group.writes < p.group.parts for p in processes)
    # Under its caller's lock, no group picked a number another held uncommitted.
    assert [p.alone for p in processes] == [0, 0]
    with autocommit(db) as conn:
        slots = conn.execute("SELECT inflight_slot FROM runs WHERE caller = 'USER#cap-race'"
                             " ORDER BY inflight_slot").fetchall()
    assert [row["inflight_slot"] for row in slots] == list(range(30))


HOSTILE_INPUTS = [
    {"q": "it's"}, {"q": "'); DELETE FROM runs; --"}, {"q": "back\\slash \\' \\\\"},
    {"q": "$1 $$ %(id)s %s %%"}, {"q": "é 日本 \U0001F600", "n": -1.5e300},
    {"q": "\\u0000 and E'x'"}, {"nested": [{"a": None}, True, "x" * 5000]},
]


def test_a_groups_values_are_stored_exactly_whatever_they_hold(
        db: ConnectionPool, make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    # The group's values travel as literals in one query text: quotes, backslashes,
    # placeholders, SQL and any character must arrive as they were sent.
    batch = [store.run_params(run_id=new_run_id(), caller=f"USER#it's-{i}", api_key_id=None,
                              endpoint=echo, input=value,
                              webhook={"url": "https://example.test/h?a='b'&c=%(d)s"})
             for i, value in enumerate(HOSTILE_INPUTS)]
    accepts = make_accepts()
    answers = _in_one_group(db, accepts, echo, batch)

    assert all(isinstance(a, datetime) for a in answers), answers
    assert accepts.alone == 0
    with autocommit(db) as conn:
        rows = conn.execute("SELECT id, caller, input, webhook FROM runs WHERE id = ANY(%s)",
                            ([p["id"] for p in batch],)).fetchall()
        count = conn.execute("SELECT count(*) AS n FROM runs").fetchone()
    by_id = {row["id"]: row for row in rows}
    for i, params in enumerate(batch):
        assert by_id[params["id"]]["input"] == HOSTILE_INPUTS[i]
        assert by_id[params["id"]]["caller"] == f"USER#it's-{i}"
        assert by_id[params["id"]]["webhook"] == {"url": "https://example.test/h?a='b'&c=%(d)s"}
    assert count is not None and count["n"] >= len(batch) + WRITERS


def test_a_group_prepares_its_statement_on_a_connection_that_lost_it(
        make_accepts: Callable[[], Accepts], echo: Endpoint) -> None:
    with autocommit(make_accepts().pool) as conn:  # a pool of its own, as a web process's
        first = store.insert_runs(conn, [_params(echo, "USER#prep") for _ in range(3)])
        # psycopg deallocates every prepared statement after a rollback, ours too.
        conn.execute("DEALLOCATE ALL")
        again = store.insert_runs(conn, [_params(echo, "USER#prep") for _ in range(2)])
        with conn.transaction(), pytest.raises(RuntimeError, match="outside any transaction"):
            store.insert_runs(conn, [_params(echo, "USER#prep")])
    assert all(isinstance(a, datetime) for a in first + again)


def test_a_group_waits_on_the_socket_once_or_twice_whatever_its_size(
        make_accepts: Callable[[], Accepts], echo: Endpoint,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each wait on the socket gives the GIL to the process's other threads and waits
    # for it back, while every accept of the group waits for this thread.
    from psycopg import waiting

    real_wait = waiting.wait
    waits = [0]

    def counting(gen: Any, fileno: int, *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            try:
                state = next(gen)
                while True:
                    waits[0] += 1
                    state = gen.send((yield state))
            except StopIteration as done:
                return done.value
        return real_wait(counted(), fileno, *args, **kwargs)

    with autocommit(make_accepts().pool) as conn:
        store.insert_runs(conn, [_params(echo, "USER#waits")])  # prepared here
        monkeypatch.setattr(waiting, "wait", counting)
        answers = store.insert_runs(conn, [_params(echo, f"USER#waits-{n}") for n in range(40)])
    assert all(isinstance(a, datetime) for a in answers)
    assert 1 <= waits[0] <= 3, waits[0]
