"""What a run writes to PostgreSQL, step by step: the store's own statements (the
accept's `insert_run`, the worker's `claim_runs` and `deliver_runs`, on connections
that plan as the worker's do) for N `demo /echo` runs on a scratch database, one step
at a time for every run, after a checkpoint; the worker's steps a run at a time (as
at low load) and by `--group` runs a statement (as under load).

    python -m bench.writes [--runs 2000] [--group 8]

For each step: WAL bytes a run, the time a run takes on one connection, the CPU its
server process spent on it (read from /proc: a PostgreSQL on this machine), and how
many of the updates of `runs` were HOT (heap-only: no index touched). The HOT counts
are exact whatever else the machine does; the WAL is the server's, so run it on a
PostgreSQL nothing else writes to, and read the times as a rough guide.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from bench.common import BENCH_CALLER, cpu_of, echo_endpoint, machine_line, scratch_database
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
    parser.add_argument("--group", type=int, default=8,
                        help="runs a statement for the worker's steps under load")
    args = parser.parse_args(argv)
    print(machine_line())
    endpoint = echo_endpoint()
    with scratch_database() as url:
        web = make_pool(url, max_size=1)
        worker = make_pool(url, max_size=1, by_keys=True)
        web.open()
        worker.open()
        watch = connect(url, autocommit=True)
        try:
            with autocommit(web) as conn:
                store.credit_wallet(conn, BENCH_CALLER, 10**15, note="bench")
            alone = [new_run_id() for _ in range(args.runs)]
            grouped = [new_run_id() for _ in range(args.runs)]
            claims: dict[str, Any] = {}

            def accept(conn: Conn, run_ids: list[str]) -> None:
                for run_id in run_ids:
                    store.insert_run(conn, run_id=run_id, caller=BENCH_CALLER,
                                     api_key_id=None, endpoint=endpoint,
                                     input={"q": "bench", "n": 1},
                                     in_flight_cap=max(1000, 4 * args.runs))

            def claim(conn: Conn, run_ids: list[str]) -> None:
                taken = store.claim_runs(conn, run_ids, worker="bench-writes", lease_seconds=60)
                claims.update((c.run_id, c) for c in taken if c)

            def deliver(conn: Conn, run_ids: list[str]) -> None:
                item = {"echo": {"q": "bench", "n": 1}}
                results.deliver_runs(conn, [results.Delivery(
                    claims[run_id], http_status=200, output=[item], output_truncated=False,
                    item_count=1, item_fields=[("echo",)], items_json='[{"echo": 1}]',
                    first_seq=0, provider_response=None, cost_micros=0) for run_id in run_ids])

            g = args.group
            steps: list[tuple[str, ConnectionPool, list[str], int, Callable[..., None]]] = [
                ("accept (insert_run)", web, alone + grouped, 1, accept),
                ("claim (claim_runs)", worker, alone, 1, claim),
                (f"claim ({g} a statement)", worker, grouped, g, claim),
                ("end (deliver_runs)", worker, alone, 1, deliver),
                (f"end ({g} a statement)", worker, grouped, g, deliver)]
            print(f"{args.runs} runs of demo /echo, each step for every run in turn (and "
                  f"{args.runs} more, whose claim and end go {g} runs a statement)")
            print(f"  {'step':<22} {'WAL a run':>12} {'ms a run':>9} {'server CPU ms':>14} "
                  f"{'updates of runs':>16} {'HOT':>6}")
            total = 0.0
            for name, pool, run_ids, size, step in steps:
                watch.execute("CHECKPOINT")
                upd0, hot0 = _updates(watch)
                wal0 = _wal(watch)
                with autocommit(pool) as conn:
                    backend = _backend(conn)
                    cpu0 = cpu_of(backend)
                    started = time.perf_counter()
                    for i in range(0, len(run_ids), size):
                        with conn.transaction():
                            step(conn, run_ids[i:i + size])
                    elapsed = time.perf_counter() - started
                    cpu = cpu_of(backend) - cpu0
                    # The statistics of this backend, sent now rather than when idle.
                    conn.execute("SELECT pg_stat_force_next_flush()")
                    conn.execute("SELECT 1")
                wal = (_wal(watch) - wal0) / len(run_ids)
                upd1, hot1 = _updates(watch)
                if (size == 1 and pool is worker) or pool is web:
                    total += wal / (2 if pool is web else 1)
                # The server's CPU is read from /proc: only for a PostgreSQL on this machine.
                server = f"{1000 * cpu / len(run_ids):>14.3f}" if cpu else f"{'-':>14}"
                print(f"  {name:<22} {wal / 1024:>8.2f} KiB {1000 * elapsed / len(run_ids):>9.3f}"
                      f" {server} {upd1 - upd0:>16} {hot1 - hot0:>6}")
            print(f"  {'a run in all (alone)':<22} {total / 1024:>8.2f} KiB")
        finally:
            watch.close()
            web.close()
            worker.close()


def _backend(conn: Conn) -> int:
    row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert row is not None
    return int(row["pid"])


if __name__ == "__main__":
    main()
