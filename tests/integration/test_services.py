"""The service layer on its own: the operations REST routes, MCP tools and `monidctl`
call, with no Flask app, on the real database, and a publisher of the test's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from psycopg_pool import ConnectionPool

from shared import errors, items, runs, wallets
from shared.callers import authenticate_key
from shared.catalog import discovery
from shared.db import transaction
from shared.keycache import KeyCache
from shared.services import Services
from shared.settings import Settings
from shared.store import credit_wallet
from shared.store.catalog import sync_catalog
from shared.waiting import RunWaiter
from tests.helpers import CATALOG, KeyMaker

CALLER = "USER#user_abc123"
ECHO = {"provider": "demo", "endpoint": "/echo", "input": {"message": "hi"}}


class Recorder:
    """Publishes nothing; remembers what it was asked to publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, int, str | None]] = []

    def publish(self, run_id: str, priority: int = 0, shadow: str | None = None) -> None:
        self.published.append((run_id, priority, shadow))

    def publish_soon(self, run_id: str, priority: int = 0, shadow: str | None = None) -> None:
        self.published.append((run_id, priority, shadow))

    def close(self, timeout: float = 5.0) -> None:
        pass


@pytest.fixture
def svc(settings: Settings, db: ConnectionPool, redis_url: str) -> Iterator[Services]:
    with transaction(db) as conn:
        sync_catalog(conn, CATALOG)
    waiter = RunWaiter(settings.database_url, slots=4)
    yield Services(settings=settings, catalog=CATALOG, pool=db, publisher=Recorder(),
                   redis=redis_lib.Redis.from_url(redis_url), waiter=waiter,
                   keys=KeyCache(settings.api_key_cache_seconds))
    waiter.close()


def published(svc: Services) -> list[str]:
    recorder = svc.publisher
    assert isinstance(recorder, Recorder)
    return [run_id for run_id, _, _ in recorder.published]


def test_a_key_is_its_caller(svc: Services, db: ConnectionPool) -> None:
    key = KeyMaker(db)("user_abc123")
    caller = authenticate_key(svc, key)
    assert caller.caller == CALLER
    for bad, message in [("nope", "malformed API key"), (key[:-4] + "AAAA", "unknown API key")]:
        with pytest.raises(errors.Unauthorized, match=message):
            authenticate_key(svc, bad)


def test_a_run_from_start_to_stop(svc: Services) -> None:
    accepted = runs.start_run(svc, CALLER, **ECHO)
    assert accepted.status == "RUNNING" and not accepted.replayed
    assert accepted.price.amount_micros == 0
    assert published(svc) == [accepted.run_id]  # stored first, then published
    run = runs.get_run(svc, CALLER, accepted.run_id)
    assert (run.status, run.input, run.stoppable) == ("RUNNING", ECHO["input"], True)
    page = runs.list_runs(svc, CALLER, limit=10)
    assert [r.id for r in page.items] == [accepted.run_id] and page.cursor is None

    stopping = runs.stop_run(svc, CALLER, accepted.run_id)
    assert (stopping.run_id, stopping.status) == (accepted.run_id, "STOPPING")
    assert runs.get_run(svc, CALLER, accepted.run_id).status == "STOPPED"
    with pytest.raises(errors.RunNotStoppable, match="already ended"):
        runs.stop_run(svc, CALLER, accepted.run_id)


def test_another_callers_run_is_not_found(svc: Services) -> None:
    accepted = runs.start_run(svc, CALLER, **ECHO)
    for operation in (runs.get_run, runs.stop_run):
        for run_id in (accepted.run_id, "not-a-run-id"):
            with pytest.raises(errors.RunNotFound):
                operation(svc, "USER#someone_else", run_id)
    with pytest.raises(errors.RunNotFound):
        items.read_items(svc, "USER#someone_else", accepted.run_id)


def test_refusals_store_nothing(svc: Services) -> None:
    with pytest.raises(errors.EndpointNotFound, match="/v1/endpoints"):
        runs.start_run(svc, CALLER, provider="demo", endpoint="/nope", input={})
    with pytest.raises(errors.InvalidRequest) as invalid:
        runs.start_run(svc, CALLER, provider="demo", endpoint="/sleep",
                       input={"seconds": "long"})
    assert set(invalid.value.errors) == {"input.seconds"}
    with pytest.raises(errors.InsufficientFunds, match="cannot cover"):
        runs.start_run(svc, CALLER, provider="apify", endpoint="/apidojo/tweet-scraper",
                       input={"searchTerms": ["AI"], "maxItems": 10})
    assert runs.list_runs(svc, CALLER, limit=10).items == []
    assert published(svc) == []


def test_an_idempotency_key_starts_one_run(svc: Services) -> None:
    first = runs.start_run(svc, CALLER, **ECHO, idempotency_key="k")
    again = runs.start_run(svc, CALLER, **{**ECHO, "input": {"message": "hi"}},
                           idempotency_key="k")
    assert again.replayed and not first.replayed
    assert (again.run_id, again.created_at, again.price) == (first.run_id, first.created_at,
                                                             first.price)
    with pytest.raises(errors.IdempotencyKeyReused):
        runs.start_run(svc, CALLER, **{**ECHO, "input": {"message": "other"}},
                       idempotency_key="k")
    assert published(svc) == [first.run_id]


def test_waiting_for_a_run_to_end(svc: Services) -> None:
    accepted = runs.start_run(svc, CALLER, provider="demo", endpoint="/sleep",
                              input={"seconds": 60})
    assert runs.get_run(svc, CALLER, accepted.run_id, wait=0.2).status == "RUNNING"
    stopper = threading.Timer(0.3, runs.stop_run, (svc, CALLER, accepted.run_id))
    stopper.start()
    started = time.monotonic()
    run = runs.get_run(svc, CALLER, accepted.run_id, wait=30)
    stopper.join()
    assert run.status == "STOPPED" and time.monotonic() - started < 15


def test_the_wallet_holds_for_open_runs(svc: Services, db: ConnectionPool) -> None:
    with transaction(db) as conn:
        credit_wallet(conn, CALLER, 1_000_000, "test")
    runs.start_run(svc, CALLER, provider="apify", endpoint="/apidojo/tweet-scraper",
                   input={"searchTerms": ["AI"], "maxItems": 10})
    wallet = wallets.get_balance(svc, CALLER)
    assert wallet.balance_micros == 1_000_000
    assert 0 < wallet.held_micros == wallet.balance_micros - wallet.available_micros


def test_the_catalog(svc: Services) -> None:
    found = discovery.discover(svc, "echo my input back", limit=3)
    assert found.count == len(found.results) > 0
    assert ("demo", "/echo") in {(m.entry.provider, m.entry.path) for m in found.results}
    with pytest.raises(errors.InvalidRequest):
        discovery.discover(svc, "the of and", limit=3)
    card = discovery.inspect(svc, "demo", "/echo")
    assert card.price.type == "PER_CALL"
    with pytest.raises(errors.EndpointNotFound, match="did you mean"):
        discovery.inspect(svc, "demo", "/ecko")
    first = discovery.list_all(svc, limit=2)
    rest: Any = discovery.list_all(svc, limit=100, cursor=first.cursor)
    assert len(first.items) + len(rest.items) == len(CATALOG.endpoints)
    with pytest.raises(errors.InvalidRequest):
        discovery.list_all(svc, limit=2, cursor="not-a-cursor")


def test_items_of_a_run_that_has_not_ended(svc: Services) -> None:
    accepted = runs.start_run(svc, CALLER, **ECHO)
    page = items.read_items(svc, CALLER, accepted.run_id, limit=5)
    assert isinstance(page, items.ItemsPage)
    assert (page.texts, page.cursor, page.total) == ([], None, 0)
    with pytest.raises(errors.InvalidRequest):
        items.read_items(svc, CALLER, accepted.run_id, format="csv", limit=5)
