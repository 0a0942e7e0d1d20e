"""Self-test of the loopback fakes: they must behave like the real providers."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tests.fakes import FakeApify, FakeJsonApi, Reply, http_date
from tests.fakes.apify import SizedDataset, tweets_for

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def apify() -> Iterator[FakeApify]:
    with FakeApify(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def client(apify: FakeApify) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apify.base_url, headers=AUTH, timeout=5) as c:
        yield c


@pytest.fixture
def jclient(api: FakeJsonApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base_url, timeout=5) as c:
        yield c


def wait_status(
    client: httpx.Client, run_id: str, statuses: set[str], timeout: float = 3.0
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"/v2/actor-runs/{run_id}").json()["data"]
        if data["status"] in statuses or time.monotonic() > deadline:
            return data
        time.sleep(0.02)


# ----------------------------------------------------------------------- Apify: auth, routes


def test_apify_requires_token(apify: FakeApify) -> None:
    with httpx.Client(base_url=apify.base_url, timeout=5) as c:
        for response in (
            c.get("/v2/actor-runs/nope"),
            c.get("/v2/actor-runs/nope", headers={"Authorization": "Bearer wrong"}),
            c.post("/v2/acts/apidojo~tweet-scraper/runs", json={}, params={"token": "x"}),
        ):
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "token-not-valid"
            assert response.json()["error"]["message"]
        assert c.get("/v2/actor-runs/nope", headers=AUTH).status_code == 404
        assert c.get("/v2/actor-runs/nope", params={"token": TOKEN}).status_code == 404
    assert apify.runs_started() == 0
    assert apify.count("GET", "/v2/actor-runs/") == 4


def test_apify_unknown_actor_and_run(client: httpx.Client) -> None:
    for path in ("/v2/acts/nobody~nothing/runs", "/v2/acts/apidojo%2Ftweet-scraper/runs"):
        response = client.post(path, json={})
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "record-not-found"
    response = client.get("/v2/actor-runs/AAAAAAAAAAAAAAAAA")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "record-not-found"
    assert client.post("/v2/actor-runs/AAAAAAAAAAAAAAAAA/abort").status_code == 404
    assert client.get("/v2/datasets/AAAAAAAAAAAAAAAAA/items").status_code == 404
    assert client.get("/v2/nothing-here").status_code == 404


def test_apify_start_run_answers_like_apify(apify: FakeApify, client: httpx.Client) -> None:
    response = client.post(
        "/v2/acts/apidojo~tweet-scraper/runs",
        params={"timeout": "120", "memory": "512", "build": "beta"},
        json={"searchTerms": ["cats"], "maxItems": 3},
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["content-length"]) == len(response.content)
    data = response.json()["data"]
    assert data["status"] == "READY"
    assert data["finishedAt"] is None
    assert data["meta"]["origin"] == "API"
    for key in ("id", "actId", "defaultDatasetId", "defaultKeyValueStoreId", "buildId"):
        assert len(data[key]) == 17 and data[key].isalnum(), key
    assert data["startedAt"].endswith("Z")
    assert data["options"]["timeoutSecs"] == 120
    assert data["options"]["memoryMbytes"] == 512
    assert data["options"]["build"] == "beta"
    assert "inputBodyLen" in data["stats"]

    run = apify.run(data["id"])
    assert run.input == {"searchTerms": ["cats"], "maxItems": 3}
    assert run.query == {"timeout": "120", "memory": "512", "build": "beta"}
    assert apify.runs_started() == 1
    assert apify.runs_started("apidojo~tweet-scraper") == 1
    assert apify.runs_started("other~actor") == 0
    call = apify.last_call("POST", "/v2/acts/")
    assert call is not None
    assert call.body == {"searchTerms": ["cats"], "maxItems": 3}
    assert call.query["memory"] == "512"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.status == 201


def test_apify_run_lifecycle(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~quick", items=[{"n": 1}, {"n": 2}], run_seconds=0.3)
    data = client.post("/v2/acts/me~quick/runs", json={"q": 1}).json()["data"]
    run_id, dataset_id = data["id"], data["defaultDatasetId"]
    assert data["status"] == "READY"
    assert client.get(f"/v2/datasets/{dataset_id}/items").json() == []

    run = apify.run(run_id)
    assert run.state(run.started_mono + 0.05)[0] == "READY"
    assert run.state(run.started_mono + 0.15) == ("RUNNING", None)
    assert run.state(run.started_mono + 0.31)[0] == "SUCCEEDED"

    seen = [data["status"]]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        current = client.get(f"/v2/actor-runs/{run_id}").json()["data"]
        if not seen or seen[-1] != current["status"]:
            seen.append(current["status"])
        if current["status"] == "SUCCEEDED":
            break
        time.sleep(0.03)
    assert seen == ["READY", "RUNNING", "SUCCEEDED"]
    assert current["finishedAt"] is not None
    assert current["exitCode"] == 0
    assert current["defaultDatasetId"] == dataset_id

    response = client.get(f"/v2/datasets/{dataset_id}/items", params={"format": "json"})
    assert response.json() == [{"n": 1}, {"n": 2}]
    assert response.headers["x-apify-pagination-total"] == "2"
    assert client.get(f"/v2/actor-runs/{run_id}/dataset/items").json() == [{"n": 1}, {"n": 2}]

    waited = client.post("/v2/acts/me~quick/runs", params={"waitForFinish": 5}, json={})
    assert waited.status_code == 201
    assert waited.json()["data"]["status"] == "SUCCEEDED"


def test_apify_default_tweet_scraper_items(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("apidojo~tweet-scraper", items=tweets_for, run_seconds=0)
    data = client.post(
        "/v2/acts/apidojo~tweet-scraper/runs",
        json={"searchTerms": ["cats", "dogs"], "maxItems": 4},
    ).json()["data"]
    assert data["status"] == "SUCCEEDED"
    items = client.get(f"/v2/datasets/{data['defaultDatasetId']}/items").json()
    assert [i["id"] for i in items] == ["0", "1", "2", "3"]
    assert items[0]["text"] == "tweet 0 about cats"
    assert items[1]["text"] == "tweet 1 about dogs"
    assert items[0]["author"]["userName"]


def test_apify_callable_items_and_final_statuses(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~echo", items=lambda inp: [{"got": inp["x"]}], run_seconds=0)
    apify.add_actor("me~broken", items=[{"a": 1}], run_seconds=0, final_status="FAILED")
    ok = client.post("/v2/acts/me~echo/runs", json={"x": 7}).json()["data"]
    assert client.get(f"/v2/datasets/{ok['defaultDatasetId']}/items").json() == [{"got": 7}]
    failed = client.post("/v2/acts/me~broken/runs", json={}).json()["data"]
    assert failed["status"] == "FAILED"
    assert failed["exitCode"] == 1
    assert client.get(f"/v2/datasets/{failed['defaultDatasetId']}/items").json() == []

    apify.add_actor("me~slow", items=[{"a": 1}], run_seconds=5)
    timed = client.post("/v2/acts/me~slow/runs", params={"timeout": "0.2"}, json={})
    assert wait_status(client, timed.json()["data"]["id"], {"TIMED-OUT"})["status"] == "TIMED-OUT"

    forced = client.post("/v2/acts/me~slow/runs", json={}).json()["data"]
    apify.set_status(forced["id"], "SUCCEEDED")
    assert apify.run(forced["id"]).status == "SUCCEEDED"
    again = client.get(f"/v2/actor-runs/{forced['id']}").json()["data"]
    assert again["status"] == "SUCCEEDED" and again["finishedAt"] is not None
    assert client.get(f"/v2/datasets/{forced['defaultDatasetId']}/items").json() == [{"a": 1}]


def test_apify_dataset_paging(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~many", items=[{"i": i} for i in range(25)], run_seconds=0)
    dataset_id = client.post("/v2/acts/me~many/runs", json={}).json()["data"]["defaultDatasetId"]
    got: list[dict] = []
    offset = 0
    pages = []
    while True:
        response = client.get(
            f"/v2/datasets/{dataset_id}/items",
            params={"format": "json", "clean": "true", "offset": offset, "limit": 10},
        )
        assert response.status_code == 200
        page = response.json()
        pages.append(len(page))
        assert response.headers["X-Apify-Pagination-Total"] == "25"
        assert response.headers["X-Apify-Pagination-Offset"] == str(offset)
        assert response.headers["X-Apify-Pagination-Limit"] == "10"
        assert response.headers["X-Apify-Pagination-Count"] == str(len(page))
        got.extend(page)
        offset += len(page)
        if not page or offset >= int(response.headers["X-Apify-Pagination-Total"]):
            break
    assert pages == [10, 10, 5]
    assert got == [{"i": i} for i in range(25)]
    everything = client.get(f"/v2/datasets/{dataset_id}/items")
    assert len(everything.json()) == 25
    assert everything.headers["X-Apify-Pagination-Count"] == "25"
    assert client.get(f"/v2/datasets/{dataset_id}/items", params={"offset": 30}).json() == []
    bad = client.get(f"/v2/datasets/{dataset_id}/items", params={"limit": "x"})
    assert bad.status_code == 400


def test_apify_clean_thins_out_a_page_after_offset_and_limit(apify: FakeApify,
                                                              client: httpx.Client) -> None:
    items = [{"i": 0}, {}, {"i": 2, "#debug": "x"}, {}, {"i": 4}]
    apify.add_actor("me~sparse", items=items, run_seconds=0)
    dataset_id = client.post("/v2/acts/me~sparse/runs", json={}).json()["data"]["defaultDatasetId"]
    first = client.get(f"/v2/datasets/{dataset_id}/items",
                       params={"clean": "1", "offset": 0, "limit": 2})
    assert first.json() == [{"i": 0}]  # the empty item counts towards the limit
    assert first.headers["X-Apify-Pagination-Count"] == "1"
    assert first.headers["X-Apify-Pagination-Total"] == "5"
    second = client.get(f"/v2/datasets/{dataset_id}/items",
                        params={"clean": "1", "offset": 2, "limit": 2})
    assert second.json() == [{"i": 2}]
    raw = client.get(f"/v2/datasets/{dataset_id}/items", params={"offset": 2, "limit": 2})
    assert raw.json() == [{"i": 2, "#debug": "x"}, {}]
    newest = client.get(f"/v2/datasets/{dataset_id}/items",
                        params={"desc": "1", "offset": 0, "limit": 2})
    assert newest.json() == [{"i": 4}, {}]


def test_apify_sized_datasets_are_made_as_they_are_read(apify: FakeApify,
                                                        client: httpx.Client) -> None:
    dataset = SizedDataset(100_000, 500)
    assert dataset.total_bytes == 50_000_000
    assert all(len(json.dumps(i, separators=(",", ":"))) == 500
               for i in (dataset[0], dataset[9], dataset[99_999]))
    apify.add_actor("me~big", items=dataset, run_seconds=0)
    dataset_id = client.post("/v2/acts/me~big/runs", json={}).json()["data"]["defaultDatasetId"]
    page = client.get(f"/v2/datasets/{dataset_id}/items",
                      params={"clean": "1", "offset": 99_998, "limit": 1000})
    assert [i["id"] for i in page.json()] == [99_998, 99_999]
    assert page.headers["X-Apify-Pagination-Total"] == "100000"


def test_apify_max_items_is_kept_and_honoured_unless_ignored(apify: FakeApify,
                                                             client: httpx.Client) -> None:
    apify.add_actor("me~careful", items=SizedDataset(50, 100), run_seconds=0)
    apify.add_actor("me~careless", items=[{"n": n} for n in range(50)], run_seconds=0,
                    ignores_max_items=True)
    for actor, expected in (("me~careful", 10), ("me~careless", 50)):
        data = client.post(f"/v2/acts/{actor}/runs", json={},
                           params={"maxItems": 10, "maxTotalChargeUsd": "0.5"}).json()["data"]
        assert data["options"]["maxItems"] == 10
        assert data["options"]["maxTotalChargeUsd"] == 0.5
        items = client.get(f"/v2/datasets/{data['defaultDatasetId']}/items")
        assert items.headers["X-Apify-Pagination-Total"] == str(expected), actor
    plain = client.post("/v2/acts/me~careful/runs", json={}).json()["data"]
    assert "maxItems" not in plain["options"]


def test_apify_a_run_that_fails_says_why(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~fails", items=[{"a": 1}], run_seconds=0, final_status="FAILED",
                    status_message="The actor crashed: out of memory")
    failed = client.post("/v2/acts/me~fails/runs", json={}).json()["data"]
    assert failed["status"] == "FAILED"
    assert failed["statusMessage"] == "The actor crashed: out of memory"
    apify.add_actor("me~slow", items=[{"a": 1}], run_seconds=5)
    timed = client.post("/v2/acts/me~slow/runs", params={"timeout": "0.2"}, json={})
    data = wait_status(client, timed.json()["data"]["id"], {"TIMED-OUT"})
    assert data["statusMessage"] == "Actor run timed out"
    running = client.post("/v2/acts/me~slow/runs", json={}).json()["data"]
    assert running["statusMessage"] is None
    client.post(f"/v2/actor-runs/{running['id']}/abort")
    assert wait_status(client, running["id"], {"ABORTED"})["statusMessage"] == (
        "Actor run was aborted")


def test_apify_a_running_run_says_its_progress(apify: FakeApify,
                                               client: httpx.Client) -> None:
    apify.add_actor("me~talks", items=[{"a": 1}], run_seconds=30,
                    progress=[(0.0, "Starting"), (0.3, "Crawled 1 of 2 pages")])
    ready = client.post("/v2/acts/me~talks/runs", json={}).json()["data"]
    assert ready["status"] == "READY" and ready["statusMessage"] is None
    assert wait_status(client, ready["id"], {"RUNNING"})["statusMessage"] == "Starting"
    time.sleep(0.35)
    path = f"/v2/actor-runs/{ready['id']}"
    assert client.get(path).json()["data"]["statusMessage"] == "Crawled 1 of 2 pages"
    apify.set_status_message(ready["id"], "Told by the test")
    assert client.get(path).json()["data"]["statusMessage"] == "Told by the test"
    apify.set_status(ready["id"], "SUCCEEDED")
    assert client.get(path).json()["data"]["statusMessage"] is None


def test_apify_abort(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~long", items=[{"a": 1}], run_seconds=30)
    apify.add_actor("me~instant", items=[{"a": 1}], run_seconds=0)
    run_id = client.post("/v2/acts/me~long/runs", json={}).json()["data"]["id"]
    aborted = client.post(f"/v2/actor-runs/{run_id}/abort")
    assert aborted.status_code == 200
    assert aborted.json()["data"]["status"] == "ABORTING"
    data = wait_status(client, run_id, {"ABORTED"})
    assert data["status"] == "ABORTED"
    assert data["finishedAt"] is not None
    assert client.get(f"/v2/datasets/{data['defaultDatasetId']}/items").json() == []

    done = client.post("/v2/acts/me~instant/runs", json={}).json()["data"]
    again = client.post(f"/v2/actor-runs/{done['id']}/abort").json()["data"]
    assert again["status"] == "SUCCEEDED"
    assert again["finishedAt"] == done["finishedAt"]


# ------------------------------------------------------------------------------ JSON API


def test_jsonapi_echo(api: FakeJsonApi, jclient: httpx.Client) -> None:
    response = jclient.post(
        "/v1/things/42",
        params={"a": "1", "b": ["x", "y"], "empty": ""},
        json={"name": "thing", "n": [1, 2]},
        headers={"X-Api-Key": "k-123"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/v1/things/42"
    assert echo["query"] == {"a": "1", "b": ["x", "y"], "empty": ""}
    assert echo["body"] == {"name": "thing", "n": [1, 2]}
    assert echo["headers"]["x-api-key"] == "k-123"
    assert echo["headers"]["content-type"] == "application/json"

    assert jclient.get("/v1/other").json()["body"] is None
    assert jclient.delete("/v1/things/42").json()["method"] == "DELETE"
    assert jclient.put("/v1/raw", content=b"not json").json()["body"] is None
    assert api.count() == 4
    assert api.count("post") == 1
    assert api.count(None, "/v1/things") == 2
    assert api.calls[0].query["b"] == ["x", "y"]
    assert api.calls[3].raw_body == b"not json"
    assert all(c.time > 0 and c.status == 200 for c in api.calls)


def test_jsonapi_routes(api: FakeJsonApi, jclient: httpx.Client) -> None:
    api.route("GET", "/v1/fixed", body={"ok": True}, headers={"X-Extra": "1"})
    api.route("POST", "/v1/created", status=201, body=lambda call: {"echo": call.body["v"]})
    api.route("*", "/v1/gone", status=410, body={"error": "gone"})
    api.route("GET", "/v1/custom", body=lambda call: Reply(202, {"q": call.query.get("q")}))
    api.route("DELETE", "/v1/empty", status=204)

    fixed = jclient.get("/v1/fixed", params={"ignored": 1})
    assert fixed.json() == {"ok": True}
    assert fixed.headers["x-extra"] == "1"
    created = jclient.post("/v1/created", json={"v": 5})
    assert (created.status_code, created.json()) == (201, {"echo": 5})
    assert jclient.patch("/v1/gone").status_code == 410
    custom = jclient.get("/v1/custom", params={"q": "z"})
    assert (custom.status_code, custom.json()) == (202, {"q": "z"})
    empty = jclient.delete("/v1/empty")
    assert (empty.status_code, empty.content) == (204, b"")
    assert jclient.get("/v1/fixed/sub").json()["path"] == "/v1/fixed/sub"  # exact paths only


def test_keep_alive(api: FakeJsonApi, jclient: httpx.Client) -> None:
    for _ in range(5):
        assert jclient.get("/ping").status_code == 200
    assert api.connections_opened == 1


def test_handler_errors_are_500_and_recorded(api: FakeJsonApi, jclient: httpx.Client) -> None:
    api.route("GET", "/boom", body=lambda call: 1 / 0)
    response = jclient.get("/boom")
    assert response.status_code == 500
    assert len(api.errors) == 1
    assert isinstance(api.errors[0], ZeroDivisionError)


# ---------------------------------------------------------------------------------- faults


def test_fail_next_with_retry_after_seconds(apify: FakeApify, client: httpx.Client) -> None:
    apify.fail_next(2, status=429, retry_after=2)
    for _ in range(2):
        response = client.get("/v2/actor-runs/nope")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["type"] == "rate-limit-exceeded"
    assert client.get("/v2/actor-runs/nope").status_code == 404  # normal behaviour again
    assert [c.fault for c in apify.calls] == ["fail", "fail", None]


def test_fail_next_with_retry_after_http_date(api: FakeJsonApi, jclient: httpx.Client) -> None:
    when = http_date(3)
    api.fail_next(1, status=429, retry_after=when, body={"message": "slow down"})
    response = jclient.get("/x")
    assert response.status_code == 429
    assert response.headers["retry-after"] == when
    delta = parsedate_to_datetime(when).timestamp() - time.time()
    assert 1 <= delta <= 4
    assert response.json() == {"message": "slow down"}
    api.fail_next(1, retry_after=0.5)
    response = jclient.get("/x")
    assert (response.status_code, response.headers["retry-after"]) == (503, "0.5")
    assert jclient.get("/x").status_code == 200


def test_faults_match_and_order(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~a", items=[], run_seconds=0)
    apify.fail_next(1, status=500, match=("POST", "/v2/acts/"))
    apify.fail_next(1, status=502, match=("POST", "/v2/acts/"))
    apify.fail_next(1, status=503, match=("GET", "/v2/datasets/"))
    assert client.get("/v2/actor-runs/nope").status_code == 404  # not matched
    assert client.post("/v2/acts/me~a/runs", json={}).status_code == 500
    assert client.post("/v2/acts/me~a/runs", json={}).status_code == 502
    assert client.post("/v2/acts/me~a/runs", json={}).status_code == 201
    assert apify.runs_started() == 1  # failed starts create no run
    assert apify.pending_faults() == 1
    assert client.get("/v2/datasets/whatever/items").status_code == 503
    assert apify.pending_faults() == 0


def test_hang_next_until_client_timeout(api: FakeJsonApi) -> None:
    api.hang_next(1)
    with httpx.Client(base_url=api.base_url, timeout=0.3) as c:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            c.get("/hang")
        assert time.monotonic() - started < 2
        assert c.get("/after").status_code == 200
    assert api.calls[0].status is None


def test_hang_next_for_seconds_then_answers(api: FakeJsonApi, jclient: httpx.Client) -> None:
    api.hang_next(1, seconds=0.3)
    started = time.monotonic()
    assert jclient.get("/x").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_stop_releases_hung_requests(api: FakeJsonApi) -> None:
    api.hang_next(1)
    errors: list[Exception] = []

    def call() -> None:
        try:
            httpx.get(f"{api.base_url}/hang", timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    assert api.wait_for_count(1, timeout=2)
    started = time.monotonic()
    api.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert errors and isinstance(errors[0], httpx.RemoteProtocolError)


def test_slow_next(apify: FakeApify, client: httpx.Client) -> None:
    apify.slow_next(1, seconds=0.4, match=("GET", "/v2/actor-runs/"))
    started = time.monotonic()
    assert client.get("/v2/actor-runs/nope").status_code == 404
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert client.get("/v2/actor-runs/nope").status_code == 404
    assert time.monotonic() - started < 0.3


def test_garbage_next(apify: FakeApify, client: httpx.Client) -> None:
    apify.garbage_next(1)
    response = client.get("/v2/actor-runs/nope")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert client.get("/v2/actor-runs/nope").status_code == 404


def test_disconnect_next(apify: FakeApify, client: httpx.Client) -> None:
    apify.add_actor("me~a", items=[], run_seconds=0)
    apify.disconnect_next(1, match=("POST", "/v2/acts/"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v2/acts/me~a/runs", json={})
    assert apify.runs_started() == 0
    assert client.post("/v2/acts/me~a/runs", json={}).status_code == 201
    assert apify.count("POST", "/v2/acts/me~a/runs") == 2


def test_delay(api: FakeJsonApi, jclient: httpx.Client) -> None:
    api.delay = 0.3
    started = time.monotonic()
    assert jclient.get("/x").status_code == 200
    assert time.monotonic() - started >= 0.3
    api.delay = 0
    started = time.monotonic()
    assert jclient.get("/x").status_code == 200
    assert time.monotonic() - started < 0.2


def test_stopped_server_refuses(api: FakeJsonApi) -> None:
    url = api.base_url
    api.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


# ----------------------------------------------------------------------------- concurrency


@pytest.mark.parametrize("kind", ["jsonapi", "apify"])
def test_600_concurrent_slow_requests(kind: str) -> None:
    fake = FakeJsonApi() if kind == "jsonapi" else FakeApify(token=TOKEN)
    with fake:
        fake.delay = 1.0
        path = "/v1/echo" if kind == "jsonapi" else "/v2/actor-runs/unknown"
        expected = 200 if kind == "jsonapi" else 404

        async def main() -> list[int]:
            # Several clients: one httpx pool of 600 connections is itself CPU-bound.
            limits = httpx.Limits(max_connections=700, max_keepalive_connections=700)
            clients = [
                httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, limits=limits, timeout=20)
                for _ in range(20)
            ]
            try:
                responses = await asyncio.gather(
                    *(clients[i % 20].get(path, params={"i": i}) for i in range(600))
                )
            finally:
                for c in clients:
                    await c.aclose()
            return [r.status_code for r in responses]

        started = time.monotonic()
        statuses = asyncio.run(main())
        elapsed = time.monotonic() - started
    assert statuses == [expected] * 600
    assert fake.count("GET") == 600
    # One after another they would take 600 s: the fake answers them at once. The
    # bound leaves room for a busy machine.
    assert elapsed < 30, elapsed
