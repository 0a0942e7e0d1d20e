"""Accepts of a process's threads written together (group commit).

Under load, many requests of one web process accept a run at the same moment, and
a statement each costs PostgreSQL a statement's start and a commit (a flush of the
WAL) for every run, and each request's thread a pooled connection and a round trip.
Here, as with the worker's claims and ends (`shared.grouping`), a few threads of a
process write at a time (`WRITERS`): a thread that finds a writer free writes its run
alone, at once, in one statement as before (at low load nothing waits); the runs
handed in while every writer is busy go in the next write, one transaction of one
round trip and one commit (`store.insert_runs`), and each thread gets its own
answer. A run whose caller has a cap on its runs in flight (MAX_RUNS_IN_FLIGHT) is
written so even alone: its caller is locked for the transaction, so that no two
writers pick the same number of the caller's (see `store.insert_runs`).

A write of several is ordered by caller, so that every writer takes callers'
locks in one order. Where it fails as a whole without losing the connection (a
number of a caller's taken by an accept outside the group, a deadlock, a value one
run spoils the others with), nothing of it was written, and each run is written
alone, as it would have been: each thread gets its own answer or error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from shared import store
from shared.db import autocommit, unavailable
from shared.grouping import Group

Answer = datetime | Exception

# Writes of a process under way at once. With one, every accept of the process waits
# for the write before its own to end, the Python of a whole group's statements done
# by one thread among many; two let a group be written while the other waits on
# PostgreSQL (bench.system, alternated: accept p99 under the push 446, 390 ms with
# one, 407, 327 with two; PostgreSQL's CPU a run the same).
WRITERS = 2


class Accepts:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.group: Group[dict[str, Any], Answer] = Group(self._write, writers=WRITERS)
        # Runs written alone after their group's write failed (for tests and benchmarks).
        self.alone = 0

    def insert(self, params: dict[str, Any]) -> datetime:
        """Store a new run (`store.run_params`' parameters) with whatever else waits;
        its `created_at`, or what `store.insert_run` raises for it."""
        answer = self.group.submit(params)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _write(self, batch: Sequence[dict[str, Any]]) -> list[Answer]:
        order = sorted(range(len(batch)), key=lambda i: (batch[i]["caller"], batch[i]["id"]))
        ordered = [batch[i] for i in order]
        # A capped caller's run is written under its caller's lock, even alone.
        as_group = len(ordered) > 1 or ordered[0]["cap"] > 0
        with autocommit(self.pool) as conn:
            written: Sequence[Answer] | None = None
            if as_group:
                try:
                    written = store.insert_runs(conn, ordered)
                except psycopg.DatabaseError:
                    if conn.broken:
                        raise  # whether it was committed is unknown: no run is written again
                    self.alone += len(ordered)
            if written is None:
                written = [_alone(conn, params) for params in ordered]
        answers = dict(zip(order, written, strict=True))
        return [answers[i] for i in range(len(batch))]


def _alone(conn: store.Conn, params: dict[str, Any]) -> Answer:
    """One run written on its own: what it answers or raises."""
    try:
        return store.insert_new_run(conn, params)
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        return unavailable(exc)
    except Exception as exc:  # its own error, raised in its own thread
        return exc
