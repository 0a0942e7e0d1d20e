"""What a run writes to PostgreSQL, step by step: the store's own statements (the
accept's `insert_run`, the worker's `claim_run` and `deliver_run`) for N `demo /echo`
runs on a scratch database, one step at a time for every run, after a checkpoint.

    python -m bench.writes [--runs 2000]

For each step: WAL bytes a run, the time a statement takes on one connection, and
how many of the updates of `runs` were HOT (heap-only: no index touched). The HOT
counts are exact whatever else the machine does; the WAL is the server's, so run it
on a PostgreSQL nothing else writes to, and read the time as a rough guide.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bench.common import BENCH_CALLER, echo_endpoint, machine_line, scratch_database
from shared import store
from shared.db import Conn, autocommit, connect, make_pool
from shared.ids import new_run_id
from shared.store import results


def _wal(conn: Conn) -> int:
    row = conn.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS at").fetchone()
    assert row is not None
    return int(row["at"])


def _updates(conn: Conn) -> tuple[int, int]:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                       " WHERE relname = 'runs'").fetchone()
    assert row is not None
    return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)
    print(machine_line())
    endpoint = echo_endpoint()
    with scratch_database() as url:
        pool = make_pool(url, max_size=1)
        pool.open()
        watch = connect(url, autocommit=True)
        try:
            with autocommit(pool) as conn:
                store.credit_wallet(conn, BENCH_CALLER, 10**15, note="bench")
            run_ids = [new_run_id() for _ in range(args.runs)]
            claims: dict[str, Any] = {}

            def accept(conn: Conn, run_id: str) -> None:
                store.insert_run(conn, run_id=run_id, caller=BENCH_CALLER, api_key_id=None,
                                 endpoint=endpoint, input={"q": "bench", "n": 1},
                                 in_flight_cap=max(1000, 2 * args.runs))

            def claim(conn: Conn, run_id: str) -> None:
                claims[run_id] = store.claim_run(conn, run_id, worker="bench-writes",
                                                 lease_seconds=60)

            def deliver(conn: Conn, run_id: str) -> None:
                item = {"echo": {"q": "bench", "n": 1}}
                results.deliver_run(conn, claims[run_id], http_status=200, output=[item],
                                    output_truncated=False, item_count=1,
                                    item_fields=[("echo",)], items_json='[{"echo": 1}]',
                                    first_seq=0, provider_response=None, cost_micros=0)

            steps: list[tuple[str, Callable[[Conn, str], None]]] = [
                ("accept (insert_run)", accept), ("claim (claim_run)", claim),
                ("end (deliver_run)", deliver)]
            print(f"{args.runs} runs of demo /echo, each step for every run in turn")
            print(f"  {'step':<22} {'WAL a run':>12} {'ms a statement':>15} "
                  f"{'updates of runs':>16} {'HOT':>6}")
            total = 0.0
            for name, step in steps:
                watch.execute("CHECKPOINT")
                upd0, hot0 = _updates(watch)
                wal0 = _wal(watch)
                started = time.perf_counter()
                with autocommit(pool) as conn:
                    for run_id in run_ids:
                        with conn.transaction():
                            step(conn, run_id)
                    elapsed = time.perf_counter() - started
                    # The statistics of this backend, sent now rather than when idle.
                    conn.execute("SELECT pg_stat_force_next_flush()")
                    conn.execute("SELECT 1")
                wal = (_wal(watch) - wal0) / args.runs
                upd1, hot1 = _updates(watch)
                total += wal
                print(f"  {name:<22} {wal / 1024:>8.2f} KiB {1000 * elapsed / args.runs:>15.3f} "
                      f"{upd1 - upd0:>16} {hot1 - hot0:>6}")
            print(f"  {'a run in all':<22} {total / 1024:>8.2f} KiB")
        finally:
            watch.close()
            pool.close()


if __name__ == "__main__":
    main()
