"""Claims and ends of many runs in one statement (shared/grouping.py, the store's
claim_runs and deliver_runs): each run is taken once, ended once and settled once,
as its own statement would; the statements plan index lookups only, even on an
empty table; and a worker process's threads really write together."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from shared import store
from shared.catalog import Endpoint, load_catalog
from shared.db import autocommit, make_pool, migrate, queries, transaction
from shared.ids import new_run_id
from shared.settings import DEFAULT_CATALOG_DIR, Settings
from shared.store import results
from worker.providers import make_adapters
from worker.runner import Runner

CALLER = "USER#grouped"


@pytest.fixture
def by_keys(settings: Settings, db: ConnectionPool) -> Iterator[ConnectionPool]:
    pool = make_pool(settings.database_url, max_size=2, name="tests-by-keys", by_keys=True)
    pool.open(wait=True)
    yield pool
    pool.close()


def _start(db: ConnectionPool, endpoint: Endpoint, n: int, *, hold: int = 0) -> list[str]:
    run_ids = [new_run_id() for _ in range(n)]
    with transaction(db) as conn:
        store.credit_wallet(conn, CALLER, 10**9, "test funds")
        for i, run_id in enumerate(run_ids):
            store.insert_run(conn, run_id=run_id, caller=CALLER, api_key_id=None,
                             endpoint=endpoint, input={"n": i}, hold_micros=hold)
    return run_ids


def _delivery(claim: store.Claim, n: int, cost: int = 0) -> results.Delivery:
    items = [{"n": n, "k": k} for k in range(n % 3 + 1)]
    return results.Delivery(
        claim, http_status=200, output=items, output_truncated=False, item_count=len(items),
        item_fields=[("k",), ("n",)], items_json=results.items_json(
            [f'{{"n":{n},"k":{k}}}'.encode() for k in range(len(items))]),
        first_seq=0, provider_response={"httpStatus": 200}, cost_micros=cost)


def test_claims_of_many_runs_take_each_once_in_the_order_given(
        by_keys: ConnectionPool, db: ConnectionPool, echo: Endpoint) -> None:
    run_ids = _start(db, echo, 5)
    with autocommit(by_keys) as conn:
        first = store.claim_runs(conn, run_ids[:2], worker="w", lease_seconds=60)
        # Taken already, given twice, not a run at all: only the new ones are taken.
        asked = [run_ids[1], run_ids[2], run_ids[2], "01ARZ3NDEKTSV4RRFFQ69G5FAV", run_ids[4]]
        second = store.claim_runs(conn, asked, worker="w", lease_seconds=60)
    assert [c.run_id if c else None for c in first] == run_ids[:2]
    taken = [c.run_id if c else None for c in second]
    assert taken[0] is None and taken[3] is None and taken[4] == run_ids[4]
    assert sorted(filter(None, taken[1:3])) == [run_ids[2]]  # once, not twice
    with autocommit(db) as conn:
        rows = conn.execute("SELECT run_id, number FROM attempts ORDER BY run_id").fetchall()
    assert [(r["run_id"], r["number"]) for r in rows] == [
        (run_ids[i], 1) for i in (0, 1, 2, 4)]


def test_ends_of_many_runs_end_and_settle_each_as_its_own_would(
        by_keys: ConnectionPool, db: ConnectionPool, echo: Endpoint) -> None:
    priced = dataclasses.replace(echo, price=dataclasses.replace(echo.price,
                                                                 amount_micros=1500))
    run_ids = _start(db, priced, 4, hold=1500)
    with autocommit(by_keys) as conn:
        claims = store.claim_runs(conn, run_ids, worker="w", lease_seconds=60)
    assert all(claims)
    with autocommit(db) as conn:
        assert store.request_stop(conn, run_ids[1], CALLER) is not None
        # The lease of run 2 ran out and another attempt took it meanwhile.
        conn.execute("UPDATE runs SET lease_token = gen_random_uuid() WHERE id = %s",
                     (run_ids[2],))
    deliveries = [_delivery(c, i, cost=1500) for i, c in enumerate(claims) if c]
    with autocommit(by_keys) as conn:
        ended = results.deliver_runs(conn, deliveries)
    assert [e.status if e else None for e in ended] == ["COMPLETED", "STOPPED", None,
                                                       "COMPLETED"]
    with autocommit(db) as conn:
        runs = {r["id"]: r for r in conn.execute(
            "SELECT id, status, cost_micros, item_count FROM runs").fetchall()}
        items = conn.execute("SELECT run_id, seq, item::text AS item FROM run_items"
                             " ORDER BY run_id, seq").fetchall()
        wallet = store.get_wallet(conn, CALLER)
        charges = conn.execute("SELECT run_id, amount_micros FROM ledger_entries"
                               " WHERE kind = 'CHARGE' ORDER BY run_id").fetchall()
    assert (runs[run_ids[0]]["cost_micros"], runs[run_ids[0]]["item_count"]) == (1500, 1)
    assert (runs[run_ids[3]]["cost_micros"], runs[run_ids[3]]["item_count"]) == (1500, 1)
    assert runs[run_ids[1]]["cost_micros"] == 0 and runs[run_ids[2]]["status"] == "RUNNING"
    assert [(i["run_id"], i["seq"]) for i in items] == [(run_ids[0], 0), (run_ids[3], 0)]
    assert [(c["run_id"], c["amount_micros"]) for c in charges] == [
        (run_ids[0], 1500), (run_ids[1], 0), (run_ids[3], 1500)]
    # Three of the four holds let go; two runs charged.
    assert wallet.balance_micros == 10**9 - 3000 and wallet.held_micros == 1500


def _plan(conn: Any, name: str) -> str:
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    statement = re.sub(r"%\((\w+)\)s", number, queries()[name])
    conn.execute(f"PREPARE grouped_{name} AS {statement}")
    try:
        nulls = ", ".join(["NULL"] * len(names))
        return "\n".join(r["QUERY PLAN"] for r in conn.execute(
            f"EXPLAIN EXECUTE grouped_{name}({nulls})"))
    finally:
        conn.execute(f"DEALLOCATE grouped_{name}")


@pytest.fixture
def new_deployment(empty_database: str) -> Iterator[ConnectionPool]:
    """Connections that plan by keys on a database just migrated, as a new deployment's
    are: `runs` empty and never vacuumed nor analyzed. (The tests' own database is
    emptied by DELETEs, and once autovacuum has found `runs` empty, its statistics say
    so, and these plans may read the whole index: not a state a deployment meets, whose
    runs stay.)"""
    migrate(empty_database)
    pool = make_pool(empty_database, max_size=1, name="tests-new-deployment", by_keys=True)
    pool.open(wait=True)
    yield pool
    pool.close()


@pytest.mark.parametrize("name", ["claim_runs", "deliver_runs"])
def test_grouped_statements_find_runs_by_key_even_in_an_empty_table(
        new_deployment: ConnectionPool, name: str) -> None:
    # Planned once for the connection: planned while `runs` is empty (as on a new
    # deployment), the plan must still be the right one for a large table.
    with autocommit(new_deployment) as conn:
        plan = _plan(conn, name)
    lines = plan.splitlines()
    runs_scans = [i for i, line in enumerate(lines)
                  if re.search(r"\bon runs\b", line) and "Scan" in line]
    assert runs_scans, plan
    for i in runs_scans:
        # Each run looked up by its key, not the whole index read and joined after.
        assert "Index Scan using runs_pkey" in lines[i], plan
        assert re.search(r"Index Cond: \(id = ", lines[i + 1]), plan
    assert "Seq Scan on runs" not in plan and "Hash Join" not in plan


def _runner(settings: Settings, db: ConnectionPool, group_pool: ConnectionPool) -> Runner:
    catalog = load_catalog(DEFAULT_CATALOG_DIR)
    return Runner(settings=settings, pool=db, catalog=catalog,
                  adapters=make_adapters(settings, catalog),
                  publish=lambda *args: None, name="grouped", group_pool=group_pool)


def _slow_first(real: Any, started: threading.Event) -> Any:
    """`real`, its first call held a moment so that other threads' parts pile up."""
    calls = []

    def slowed(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            started.set()
            time.sleep(0.5)
        return real(*args, **kwargs)

    return slowed


def test_a_worker_processs_threads_claim_and_end_their_runs_together(
        settings: Settings, db: ConnectionPool, by_keys: ConnectionPool, echo: Endpoint,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run_ids = _start(db, echo, 40)
    runner = _runner(settings, db, by_keys)
    claimed, delivered = threading.Event(), threading.Event()
    monkeypatch.setattr(store, "claim_runs", _slow_first(store.claim_runs, claimed))
    monkeypatch.setattr(results, "deliver_runs", _slow_first(results.deliver_runs, delivered))
    outcomes: dict[str, str] = {}

    def work(run_id: str) -> None:
        outcomes[run_id] = runner.run(run_id)

    threads = [threading.Thread(target=work, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == {r: "completed" for r in run_ids}
    assert runner.claims.parts == 40 and runner.claims.writes < 40
    assert runner.deliveries.parts == 40 and runner.deliveries.writes < 40
    with autocommit(db) as conn:
        rows = conn.execute("SELECT r.id, r.status, r.input::text AS input,"
                            " r.output::text AS output, count(a.*) AS attempts"
                            " FROM runs r JOIN attempts a ON a.run_id = r.id"
                            " GROUP BY r.id").fetchall()
    assert len(rows) == 40
    for row in rows:
        assert row["status"] == "COMPLETED" and row["attempts"] == 1
        assert row["input"].replace(" ", "") in row["output"].replace(" ", "")


def test_a_run_whose_items_another_attempt_wrote_does_not_spoil_the_others_end(
        settings: Settings, db: ConnectionPool, by_keys: ConnectionPool,
        echo: Endpoint) -> None:
    run_ids = _start(db, echo, 3)
    with autocommit(db) as conn:
        claims = store.claim_runs(conn, run_ids, worker="w", lease_seconds=60)
        conn.execute("INSERT INTO run_items (run_id, seq, item) VALUES (%s, 0, '{}')",
                     (run_ids[1],))
    runner = _runner(settings, db, by_keys)
    deliveries: Sequence[results.Delivery] = [
        _delivery(c, i) for i, c in enumerate(claims) if c]
    ended = runner._deliver_together(deliveries)
    assert [e.status if e else None for e in ended] == ["COMPLETED", None, "COMPLETED"]


def test_the_heartbeat_skips_a_run_being_ended_instead_of_waiting_for_it(
        by_keys: ConnectionPool, db: ConnectionPool, echo: Endpoint) -> None:
    # A statement that ends several runs locks them in its own order; a heartbeat that
    # waited for one of them could deadlock with it (and miss its beat).
    run_ids = _start(db, echo, 3)
    with autocommit(by_keys) as conn:
        claims = [c for c in store.claim_runs(conn, run_ids, worker="w", lease_seconds=60)
                  if c]
    with transaction(db) as ending:
        ending.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_ids[0],))
        started = time.monotonic()
        with transaction(db) as beat:
            beat.execute("SET LOCAL lock_timeout = '2s'")  # a wait fails, not hangs
            renewed = store.renew_leases(beat, [c.lease_token for c in claims], 120)
        assert time.monotonic() - started < 1.0
    assert renewed == 2


def test_a_worker_handing_back_its_runs_waits_for_an_end_instead_of_deadlocking(
        by_keys: ConnectionPool, db: ConnectionPool, echo: Endpoint) -> None:
    # An end of several runs locks them by caller, then run; a hand-back at shutdown
    # that locked them in another order (here: the table's) would deadlock with it,
    # and one of the two would fail after a second.
    first, second = new_run_id(), new_run_id()  # the later run has the earlier caller
    with transaction(db) as conn:
        for run_id, caller in ((first, "USER#grouped-b"), (second, "USER#grouped-a")):
            store.credit_wallet(conn, caller, 10**9, "test funds")
            store.insert_run(conn, run_id=run_id, caller=caller, api_key_id=None,
                             endpoint=echo, input={}, hold_micros=0)
    with autocommit(by_keys) as conn:
        assert all(store.claim_runs(conn, [first, second], worker="w-1.7",
                                    lease_seconds=60))
    handed: list[str] = []
    errors: list[BaseException] = []

    def hand_back() -> None:
        try:
            with autocommit(db) as conn:
                conn.execute("SET lock_timeout = '5s'")
                handed.extend(store.hand_back_runs(conn, "w-1."))
        except BaseException as exc:
            errors.append(exc)

    with transaction(db) as ending:
        ending.execute("SET LOCAL lock_timeout = '4s'")
        ending.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (second,))
        thread = threading.Thread(target=hand_back)
        thread.start()
        time.sleep(0.3)  # the hand-back waits for the run locked first
        started = time.monotonic()
        ending.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (first,))
        assert time.monotonic() - started < 0.5
        ending.execute("UPDATE runs SET status = 'COMPLETED', completed_at = now(), "
                       "lease_token = NULL, lease_owner = NULL WHERE id = %s", (second,))
    thread.join(10)
    assert not errors
    assert handed == [first]  # the run ended meanwhile is not handed back
    with autocommit(db) as conn:
        rows = conn.execute("SELECT id, lease_token FROM runs WHERE id = ANY(%s)",
                            ([first, second],)).fetchall()
    assert all(r["lease_token"] is None for r in rows)



def test_the_heartbeat_and_an_attempts_end_set_no_indexed_column(db: ConnectionPool) -> None:
    # Every few seconds the heartbeat moves each held run's lease_expires_at, and each
    # run's end closes its attempt. With none of the columns they set in an index (nor
    # in an index's condition), PostgreSQL can update the row in place on its page, left
    # room by the tables' fillfactor, and write no index again (a HOT update): the
    # saving of migration 0011. An index over one of them makes every such update write
    # every index of its table.
    set_by = {"runs": {"lease_expires_at"},  # renew_leases
              "attempts": {"ended_at", "outcome", "http_status", "message",
                           "next_attempt_at"}}  # an attempt's end, every way it ends
    with autocommit(db) as conn:
        for table, columns in set_by.items():
            indexes = [row["indexdef"] for row in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'"
                " AND tablename = %s", (table,))]
            assert indexes, table
            for column in columns:
                found = [d for d in indexes if re.search(rf"\b{column}\b", d)]
                assert not found, f"{table}.{column} is in an index: {found}"
