"""The Apify and HTTP adapters through the runner, against loopback fakes of the
providers and the real database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from psycopg_pool import ConnectionPool

from shared import store
from shared.catalog import Catalog, hold_for, load_catalog
from shared.db import transaction
from shared.ids import new_run_id
from shared.settings import DEFAULT_CATALOG_DIR, Settings, load_settings
from tests.fakes.apify import FakeApify
from tests.fakes.jsonapi import FakeJsonApi, http_date
from worker.providers import make_adapters
from worker.runner import Runner

SECRETS = {"APIFY_TOKEN": "apify-secret-token", "EXA_API_KEY": "exa-secret-key",
           "GITHUB_TOKEN": "github-secret-token", "PDL_API_KEY": "pdl-secret-key"}


@pytest.fixture
def apify() -> Iterator[FakeApify]:
    with FakeApify(token=SECRETS["APIFY_TOKEN"]) as fake:
        yield fake


@pytest.fixture
def provider_settings(base_env: dict[str, str], apify: FakeApify,
                      api: FakeJsonApi) -> Settings:
    return load_settings({**base_env, **SECRETS, "APIFY_API_BASE_URL": apify.base_url,
                          "EXA_API_BASE_URL": api.base_url, "GITHUB_API_BASE_URL": api.base_url,
                          "PDL_API_BASE_URL": api.base_url, "RETRY_BASE_SECONDS": "0.05",
                          "RETRY_MAX_SECONDS": "30"})


class Driver:
    """Runs a run to its end the way the queue would, without waiting out delays."""

    def __init__(self, settings: Settings, pool: ConnectionPool, catalog: Catalog) -> None:
        self.pool = pool
        self.catalog = catalog
        self.published: list[tuple[str, float | None]] = []
        self.runner = Runner(settings=settings, pool=pool, catalog=catalog,
                             adapters=make_adapters(settings),
                             publish=lambda run_id, c, *_: self.published.append((run_id, c)),
                             name="test")

    def start(self, provider: str, endpoint: str, input: dict[str, Any]) -> str:
        found = self.catalog.find(provider, endpoint)
        assert found is not None
        hold, cap = hold_for(found, input)
        run_id = new_run_id()
        with transaction(self.pool) as conn:
            store.credit_wallet(conn, "USER#u", max(hold, 1), "test funds")
            store.insert_run(conn, run_id=run_id, caller="USER#u", api_key_id=None,
                             endpoint=found, input=input, hold_micros=hold, max_results=cap)
        return run_id

    def step(self, run_id: str) -> str:
        with transaction(self.pool) as conn:
            conn.execute("UPDATE runs SET next_attempt_at = now() WHERE id = %s"
                         " AND next_attempt_at IS NOT NULL", (run_id,))
        return self.runner.run(run_id)

    def drive(self, run_id: str, *, steps: int = 50, pause: float = 0.0) -> list[str]:
        outcomes = []
        for _ in range(steps):
            outcome = self.step(run_id)
            outcomes.append(outcome)
            if outcome not in ("retry", "following"):
                return outcomes
            time.sleep(pause)
        raise AssertionError(f"run did not end: {outcomes}")

    def run(self, run_id: str) -> store.Run:
        with transaction(self.pool) as conn:
            run = store.get_run(conn, run_id, "USER#u")
        assert run is not None
        return run


@pytest.fixture
def driver(provider_settings: Settings, db: ConnectionPool) -> Driver:
    return Driver(provider_settings, db, load_catalog(DEFAULT_CATALOG_DIR))


# --- Apify ---------------------------------------------------------------------


def test_the_seed_run_completes_with_the_actors_items(driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.3,
                    items=lambda i: [{"id": str(n), "text": f"tweet {n}"}
                                     for n in range(i["maxItems"])])
    run_id = driver.start("apify", "/apidojo/tweet-scraper",
                          {"searchTerms": ["AI"], "maxItems": 10})
    outcomes = driver.drive(run_id, pause=0.15)
    assert outcomes[0] == "following" and outcomes[-1] == "completed"
    run = driver.run(run_id)
    assert run.status == "COMPLETED"
    assert run.output == [{"id": str(n), "text": f"tweet {n}"} for n in range(10)]
    assert run.result_count == 10
    assert run.provider_response == {"httpStatus": 200}
    assert run.cost_micros == 3000
    assert [a["outcome"] for a in run.attempts] == ["OK"]
    assert apify.runs_started("apidojo~tweet-scraper") == 1
    started = apify.runs("apidojo~tweet-scraper")[0]
    assert started.input == {"searchTerms": ["AI"], "maxItems": 10}
    start_call = apify.last_call("POST", "/v2/acts/apidojo~tweet-scraper/runs")
    assert start_call is not None
    assert start_call.headers["authorization"] == f"Bearer {SECRETS['APIFY_TOKEN']}"
    assert 0 < int(start_call.query["timeout"]) <= 900  # Apify ends it by our deadline
    assert "apify-secret-token" not in json.dumps(
        [run.output, run.provider_response, run.error, run.input])


def test_a_large_dataset_is_read_page_by_page(driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1,
                    items=[{"tweet": n} for n in range(2345)])
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    driver.drive(run_id, pause=0.2)
    run = driver.run(run_id)
    assert run.status == "COMPLETED"
    assert run.result_count == 2345 and run.output[-1] == {"tweet": 2344}
    pages = [c for c in apify.calls if "/items" in c.path]
    # A first small page, then pages sized from what the items weigh.
    assert [(c.query["offset"], c.query["limit"]) for c in pages] == [
        ("0", "100"), ("100", "1000"), ("1100", "1000"), ("2100", "1000")]
    assert run.cost_micros == 3000  # PER_CALL


def test_a_redelivered_task_follows_the_same_actor_run(driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.5, items=[{"id": "1"}])
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    with transaction(driver.pool) as conn:
        state = conn.execute("SELECT provider_state FROM runs WHERE id = %s",
                             (run_id,)).fetchone()
    assert state is not None and state["provider_state"]["actorRunId"]
    # The same message again, and again after the check is due: never a second start.
    assert driver.runner.run(run_id) in ("early", "skipped")
    driver.drive(run_id, pause=0.2)
    assert apify.runs_started() == 1
    run = driver.run(run_id)
    assert run.status == "COMPLETED" and run.attempt_count == 1


def test_a_failed_actor_run_is_the_providers_answer_not_a_retry(driver: Driver,
                                                                 apify: FakeApify) -> None:
    apify.add_actor("apify~instagram-scraper", run_seconds=0.1, final_status="FAILED",
                    status_message="The actor crashed")
    run_id = driver.start("apify", "/apify/instagram-scraper", {"search": "cats"})
    assert driver.drive(run_id, pause=0.2)[-1] == "failed"
    run = driver.run(run_id)
    assert run.status == "FAILED"
    assert apify.runs_started("apify~instagram-scraper") == 1
    actor_run = apify.runs()[0].id
    message = f"Apify actor run {actor_run} ended FAILED: The actor crashed"
    assert run.error == {"source": "provider", "code": "PROVIDER_RUN_FAILED",
                         "message": message}
    assert run.provider_response == {"httpStatus": None, "actorRunId": actor_run,
                                     "status": "FAILED", "statusMessage": "The actor crashed"}
    assert [(a["outcome"], a["httpStatus"], a["message"]) for a in run.attempts] == [
        ("PERMANENT_ERROR", None, message)]
    assert run.cost_micros == 0


def test_apify_checks_that_fail_do_not_start_a_second_actor_run(
        driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=0.1, items=[{"id": "1"}])
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    apify.fail_next(3, status=503, match=("GET", "/v2/actor-runs/"))
    apify.disconnect_next(1, match=("GET", "/v2/datasets/"))
    outcomes = driver.drive(run_id, pause=0.15)
    assert outcomes[-1] == "completed"
    assert apify.runs_started() == 1
    assert len(driver.run(run_id).attempts) == 1


def provider_state(driver: Driver, run_id: str) -> Any:
    with transaction(driver.pool) as conn:
        row = conn.execute("SELECT provider_state FROM runs WHERE id = %s",
                           (run_id,)).fetchone()
    return row["provider_state"] if row else None


def test_an_actor_runs_status_message_is_kept_with_the_state_until_it_changes(
        driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=60, items=[{"id": "1"}])
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    assert "progress" not in provider_state(driver, run_id)  # started: nothing said yet
    actor_run = provider_state(driver, run_id)["actorRunId"]
    time.sleep(0.15)  # RUNNING
    apify.set_status_message(actor_run, "Crawled 1 of 3 pages")
    assert driver.step(run_id) == "following"
    kept = provider_state(driver, run_id)["progress"]
    assert {k: kept[k] for k in ("attempt", "n", "message")} == {
        "attempt": 1, "n": 1, "message": "Crawled 1 of 3 pages"}
    # Checks that fail, or read the same message, keep it as it was.
    apify.fail_next(2, status=503, match=("GET", "/v2/actor-runs/"))
    for _ in range(3):
        assert driver.step(run_id) == "following"
        assert provider_state(driver, run_id)["progress"] == kept
    apify.set_status_message(actor_run, "Crawled 2 of 3 pages")
    assert driver.step(run_id) == "following"
    assert provider_state(driver, run_id)["progress"]["n"] == 2
    apify.set_status(actor_run, "SUCCEEDED")
    assert driver.drive(run_id)[-1] == "completed"
    assert driver.run(run_id).output == [{"id": "1"}]


def test_a_permanent_apify_error_completes_with_its_status(driver: Driver,
                                                           apify: FakeApify) -> None:
    apify.fail_next(1, status=400, body={"error": {"type": "invalid-input",
                                                   "message": "Input is not valid"}},
                    match=("POST", "/v2/acts/"))
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    assert run.status == "COMPLETED"
    assert run.provider_response == {"httpStatus": 400, "error": {
        "error": {"type": "invalid-input", "message": "Input is not valid"}}}
    assert run.cost_micros == 0 and run.output is None


def test_a_missing_apify_token_fails_as_a_platform_error(
        base_env: dict[str, str], db: ConnectionPool) -> None:
    settings = load_settings({**base_env, "APIFY_API_BASE_URL": "http://127.0.0.1:9"})
    driver = Driver(settings, db, load_catalog(DEFAULT_CATALOG_DIR))
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.drive(run_id) == ["failed"]
    run = driver.run(run_id)
    assert run.error["source"] == "platform" and "APIFY_TOKEN" in run.error["message"]


def test_an_apify_run_past_its_deadline_is_aborted_and_timed_out(
        driver: Driver, apify: FakeApify) -> None:
    apify.add_actor("apidojo~tweet-scraper", run_seconds=60)
    run_id = driver.start("apify", "/apidojo/tweet-scraper", {"searchTerms": ["AI"]})
    assert driver.step(run_id) == "following"
    with transaction(driver.pool) as conn:
        conn.execute("UPDATE runs SET deadline_at = now() WHERE id = %s", (run_id,))
    assert driver.step(run_id) == "timed_out"
    run = driver.run(run_id)
    assert run.status == "TIMED_OUT" and run.cost_micros == 0
    assert [a["outcome"] for a in run.attempts] == ["TIMEOUT"]
    assert apify.count("POST", "/v2/actor-runs/") == 1  # the abort
    actor_run = apify.runs()[0]
    assert actor_run.state()[0] in ("ABORTING", "ABORTED")


# --- HTTP ------------------------------------------------------------------------


def test_http_maps_flat_input_to_the_json_body_with_its_auth_header(
        driver: Driver, api: FakeJsonApi) -> None:
    api.route("POST", "/search", body={"results": [{"url": "https://a"}, {"url": "https://b"}]})
    run_id = driver.start("exa", "/search", {"query": "AI agents", "numResults": 2})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    assert run.output == {"results": [{"url": "https://a"}, {"url": "https://b"}]}
    assert run.result_count == 2
    assert run.cost_micros == 5000
    call = api.last_call("POST", "/search")
    assert call is not None
    assert call.body == {"query": "AI agents", "numResults": 2}
    assert call.headers["x-api-key"] == SECRETS["EXA_API_KEY"]


def test_http_maps_path_and_query_params(driver: Driver, api: FakeJsonApi) -> None:
    run_id = driver.start("github", "/repos/get",
                          {"pathParams": {"owner": "pallets", "repo": "flask"}})
    assert driver.drive(run_id) == ["completed"]
    echoed = driver.run(run_id).output
    assert echoed["method"] == "GET" and echoed["path"] == "/repos/pallets/flask"
    assert echoed["body"] is None
    # The provider got the token; the run (which its caller reads) never stores it.
    sent = api.last_call("GET", "/repos/pallets/flask")
    assert sent is not None
    assert sent.headers["authorization"] == f"Bearer {SECRETS['GITHUB_TOKEN']}"
    assert echoed["headers"]["authorization"] == "Bearer [REDACTED]"

    run_id = driver.start("github", "/search/repositories",
                          {"queryParams": {"q": "celery language:python", "sort": "stars"}})
    assert driver.drive(run_id) == ["completed"]
    echoed = driver.run(run_id).output
    assert echoed["path"] == "/search/repositories"
    # The endpoint's fixed parameter, then the caller's.
    assert echoed["query"] == {"per_page": "30", "q": "celery language:python", "sort": "stars"}


def test_http_get_endpoints_send_flat_input_as_the_query(driver: Driver,
                                                         api: FakeJsonApi) -> None:
    run_id = driver.start("peopledatalabs", "/v5/person/enrich",
                          {"email": "ada@example.com", "min_likelihood": 6, "pretty": True})
    assert driver.drive(run_id) == ["completed"]
    echoed = driver.run(run_id).output
    assert echoed["path"] == "/v5/person/enrich"
    assert echoed["query"] == {"email": "ada@example.com", "min_likelihood": "6",
                               "pretty": "true"}
    assert echoed["headers"]["x-api-key"] == "[REDACTED]"  # sent, and never stored
    sent = api.last_call("GET", "/v5/person/enrich")
    assert sent is not None and sent.headers["x-api-key"] == SECRETS["PDL_API_KEY"]


def test_a_transient_failure_then_success_shows_every_attempt(driver: Driver,
                                                              api: FakeJsonApi) -> None:
    api.fail_next(2, status=503)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["retry", "retry", "completed"]
    run = driver.run(run_id)
    assert [(a["outcome"], a["httpStatus"]) for a in run.attempts] == [
        ("TRANSIENT_ERROR", 503), ("TRANSIENT_ERROR", 503), ("OK", 200)]
    assert api.count("POST", "/search") == 3


@pytest.mark.parametrize("retry_after", [7, "date"])
def test_retry_after_is_honoured(driver: Driver, api: FakeJsonApi,
                                 retry_after: int | str) -> None:
    api.fail_next(1, status=429, retry_after=http_date(7) if retry_after == "date" else 7)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.runner.run(run_id) == "retry"
    countdown = driver.published[-1][1]
    assert countdown is not None and 5.5 <= countdown <= 7.5
    run = driver.run(run_id)
    assert run.attempts[0]["outcome"] == "TRANSIENT_ERROR"
    assert run.attempts[0]["httpStatus"] == 429
    assert run.attempts[0]["nextAttemptAt"] is not None


def test_a_permanent_404_completes_with_the_providers_error(driver: Driver,
                                                            api: FakeJsonApi) -> None:
    api.route("GET", "/v5/person/enrich", status=404,
              body={"status": 404, "error": {"type": "not_found", "message": "No records"}})
    run_id = driver.start("peopledatalabs", "/v5/person/enrich", {"email": "no@example.com"})
    assert driver.drive(run_id) == ["completed"]
    run = driver.run(run_id)
    assert run.status == "COMPLETED"
    assert run.provider_response == {"httpStatus": 404, "error": {
        "status": 404, "error": {"type": "not_found", "message": "No records"}}}
    assert run.cost_micros == 0
    assert api.count("GET", "/v5/person/enrich") == 1


def test_retries_exhausted_fail_the_run(driver: Driver, api: FakeJsonApi) -> None:
    api.fail_next(10, status=502)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["retry"] * 3 + ["failed"]
    run = driver.run(run_id)
    assert run.status == "FAILED" and run.error["source"] == "provider"
    assert run.provider_response["httpStatus"] == 502
    assert api.count("POST", "/search") == 4  # maxAttempts of exa /search


def test_garbage_after_a_2xx_is_tried_once_more_then_final(driver: Driver,
                                                           api: FakeJsonApi) -> None:
    api.garbage_next(2)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["retry", "completed"]
    run = driver.run(run_id)
    assert [a["outcome"] for a in run.attempts] == ["TRANSIENT_ERROR", "PERMANENT_ERROR"]
    assert run.provider_response["httpStatus"] == 200
    assert run.cost_micros == 0


def test_connection_errors_are_transient(driver: Driver, api: FakeJsonApi) -> None:
    api.disconnect_next(1)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["retry", "completed"]
    assert driver.run(run_id).attempts[0]["httpStatus"] is None


def test_an_answer_over_the_size_cap_fails_the_run(base_env: dict[str, str],
                                                   db: ConnectionPool, api: FakeJsonApi) -> None:
    settings = load_settings({**base_env, **SECRETS, "EXA_API_BASE_URL": api.base_url,
                              "PROVIDER_MAX_RESPONSE_BYTES": "2048"})
    driver = Driver(settings, db, load_catalog(DEFAULT_CATALOG_DIR))
    api.route("POST", "/search", body={"results": ["x" * 5000]})
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["failed"]
    run = driver.run(run_id)
    assert run.status == "FAILED" and run.output is None and run.cost_micros == 0
    assert run.error == {"source": "platform", "code": "RESPONSE_TOO_LARGE", "message": (
        "the provider's answer of 5017 bytes is over the 2048 bytes this server reads of one "
        "answer")}
    assert run.provider_response is None
    assert [a["outcome"] for a in run.attempts] == ["PERMANENT_ERROR"]
    assert api.count("POST", "/search") == 1  # not tried again


def test_an_error_answer_over_the_size_cap_is_still_what_its_status_says(
        base_env: dict[str, str], db: ConnectionPool, api: FakeJsonApi) -> None:
    settings = load_settings({**base_env, **SECRETS, "EXA_API_BASE_URL": api.base_url,
                              "PROVIDER_MAX_RESPONSE_BYTES": "2048"})
    driver = Driver(settings, db, load_catalog(DEFAULT_CATALOG_DIR))
    api.fail_next(1, status=503, body="overloaded " * 1000)
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["retry", "completed"]
    run = driver.run(run_id)
    assert [(a["outcome"], a["httpStatus"]) for a in run.attempts] == [
        ("TRANSIENT_ERROR", 503), ("OK", 200)]


def test_a_hung_provider_is_ended_by_its_deadline(base_env: dict[str, str], db: ConnectionPool,
                                                  api: FakeJsonApi, tmp_path: Path) -> None:
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    (catalog_dir / "slow.json").write_text(json.dumps({
        "provider": "slow", "name": "Slow", "adapter": "http",
        "endpoints": [{"path": "/hang", "name": "Hang", "description": "Never answers.",
                       "inputSchema": {"type": "object"},
                       "price": {"type": "PER_CALL", "amount": 0.01},
                       "deadlineSeconds": 2, "maxAttempts": 5,
                       "call": {"method": "POST", "baseUrl": api.base_url, "path": "/hang",
                                "timeoutSeconds": 60}}]}))
    settings = load_settings({**base_env, "CATALOG_DIR": str(catalog_dir)})
    driver = Driver(settings, db, load_catalog(catalog_dir))
    api.hang_next(5, seconds=None)
    run_id = driver.start("slow", "/hang", {})
    started = time.monotonic()
    assert driver.drive(run_id) == ["timed_out"]
    assert 1.5 < time.monotonic() - started < 5
    run = driver.run(run_id)
    assert run.status == "TIMED_OUT" and run.cost_micros == 0
    assert [a["outcome"] for a in run.attempts] == ["TIMEOUT"]


def test_a_missing_secret_fails_as_a_platform_error(base_env: dict[str, str],
                                                    db: ConnectionPool,
                                                    api: FakeJsonApi) -> None:
    settings = load_settings({**base_env, "EXA_API_BASE_URL": api.base_url})
    driver = Driver(settings, db, load_catalog(DEFAULT_CATALOG_DIR))
    run_id = driver.start("exa", "/search", {"query": "x"})
    assert driver.drive(run_id) == ["failed"]
    run = driver.run(run_id)
    assert run.error == {"source": "platform", "code": "PROVIDER_NOT_CONFIGURED",
                         "message": "the provider's secret is not configured: set EXA_API_KEY"}
    assert api.count() == 0


# --- secrets echoed back ------------------------------------------------------------


def test_secrets_an_answer_echoes_are_never_stored(driver: Driver, api: FakeJsonApi,
                                                   db: ConnectionPool) -> None:
    run_id = driver.start("exa", "/search", {"query": "AI"})
    assert driver.drive(run_id) == ["completed"]
    stored = driver.run(run_id)
    assert stored.output["headers"]["x-api-key"] == "[REDACTED]"
    with transaction(db) as conn:
        row = conn.execute("SELECT r.*, (SELECT json_agg(a) FROM attempts a WHERE a.run_id = r.id)"
                           " AS attempts FROM runs r WHERE r.id = %s", (run_id,)).fetchone()
    assert SECRETS["EXA_API_KEY"] not in json.dumps(row, default=str)


def test_secrets_in_error_bodies_and_messages_are_never_stored(
        driver: Driver, api: FakeJsonApi, db: ConnectionPool) -> None:
    token = SECRETS["GITHUB_TOKEN"]
    # A final 4xx, and a 5xx that outlasts the retries, both quoting the token (once
    # percent-encoded, as a URL would carry it).
    api.fail_next(1, status=401, body={"message": f"bad credentials: Bearer {token}",
                                       "url": f"https://x/?t={quote(token, safe='')}"})
    run_id = driver.start("github", "/repos/get",
                          {"pathParams": {"owner": "pallets", "repo": "flask"}})
    assert driver.drive(run_id) == ["completed"]
    assert driver.run(run_id).provider_response == {
        "httpStatus": 401, "error": {"message": "bad credentials: Bearer [REDACTED]",
                                     "url": "https://x/?t=[REDACTED]"}}
    api.fail_next(10, status=503, body={"echo": {"authorization": f"Bearer {token}"}})
    run_id = driver.start("github", "/repos/get",
                          {"pathParams": {"owner": "pallets", "repo": "flask"}})
    driver.drive(run_id)
    failed = driver.run(run_id)
    assert failed.status == "FAILED"
    with transaction(db) as conn:
        rows = conn.execute("SELECT r.provider_response, r.error, a.message FROM runs r"
                            " JOIN attempts a ON a.run_id = r.id WHERE r.id = %s",
                            (run_id,)).fetchall()
    assert rows and token not in json.dumps(rows, default=str)
    assert "[REDACTED]" in json.dumps(rows)


def test_a_dot_segment_path_parameter_never_reaches_the_provider(driver: Driver,
                                                                 api: FakeJsonApi) -> None:
    # Refused at accept time; a run stored all the same is not sent on.
    run_id = driver.start("github", "/repos/get", {"pathParams": {"owner": "pallets",
                                                                   "repo": ".."}})
    assert driver.drive(run_id) == ["completed"]
    assert driver.run(run_id).provider_response["error"] == (
        "input.pathParams.repo must not be empty, '.' or '..'")
    assert api.calls == []
