"""GET /v1/runs/<id>/items: JSON pages, JSONL and CSV downloads, and every way to ask
for them wrongly; against runs whose results the worker's writer stored."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from shared import cursors, store
from shared.db import autocommit
from shared.settings import Settings
from tests.helpers import KeyMaker, auth
from worker.providers.base import ProviderResult
from worker.results import ResultWriter

Deliver = Callable[[str, Any], None]


def start(client: FlaskClient, key: str) -> str:
    resp = client.post("/v1/run", json={"provider": "demo", "endpoint": "/echo", "input": {}},
                       headers=auth(key))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_id: str = resp.get_json()["runId"]
    return run_id


@pytest.fixture
def deliver(db: ConnectionPool, settings: Settings) -> Deliver:
    """Ends a run COMPLETED with these items, as a worker writes a result."""

    def run(run_id: str, items: Any) -> None:
        with autocommit(db) as conn:
            claim = store.claim_run(conn, run_id, worker="test", lease_seconds=60)
        assert claim is not None
        ended = ResultWriter(settings=settings, pool=db).write(
            claim, ProviderResult(output=items), cost_of=lambda n: 0)
        assert ended is not None and ended.status == "COMPLETED"

    return run


@pytest.fixture
def run_with(client: FlaskClient, key: str, deliver: Deliver) -> Callable[[Any], str]:
    def make(items: Any) -> str:
        run_id = start(client, key)
        deliver(run_id, items)
        return run_id

    return make


def get(client: FlaskClient, key: str, run_id: str, **params: Any) -> Any:
    return client.get(f"/v1/runs/{run_id}/items", query_string=params, headers=auth(key))


def page(client: FlaskClient, key: str, run_id: str, **params: Any) -> dict[str, Any]:
    resp = get(client, key, run_id, **params)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body: dict[str, Any] = resp.get_json()
    assert set(body) == {"items", "cursor", "total"}
    return body


# --- JSON pages ------------------------------------------------------------------------


def test_pages_walk_through_every_item_once(client: FlaskClient, key: str,
                                            run_with: Callable[[Any], str]) -> None:
    items = [{"n": n, "text": f"item {n}"} for n in range(250)]
    run_id = run_with(items)
    first = page(client, key, run_id)
    assert first["total"] == 250 and first["items"] == items[:100]  # 100 by default
    seen, cursor = list(first["items"]), first["cursor"]
    while cursor is not None:
        body = page(client, key, run_id, limit=70, cursor=cursor)
        assert body["total"] == 250
        seen.extend(body["items"])
        cursor = body["cursor"]
    assert seen == items
    assert page(client, key, run_id, limit=1000)["cursor"] is None


def test_a_page_stops_short_of_four_mib(client: FlaskClient, key: str,
                                        run_with: Callable[[Any], str]) -> None:
    items = [{"n": n, "pad": "x" * 100_000} for n in range(60)]
    run_id = run_with(items)
    first = page(client, key, run_id, limit=60)
    count = len(first["items"])
    assert 40 <= count <= 43 and first["cursor"] is not None
    rest = page(client, key, run_id, limit=60, cursor=first["cursor"])
    assert [i["n"] for i in first["items"] + rest["items"]] == list(range(60))


def test_fields_pick_from_json_items(client: FlaskClient, key: str,
                                     run_with: Callable[[Any], str]) -> None:
    run_id = run_with([{"id": 1, "author": {"name": "ada", "age": 36}, "text": "hi"},
                       {"id": 2, "author": "not an object"}, "a bare string"])
    body = page(client, key, run_id, fields="author.name,id,value")
    assert body["items"] == [{"author": {"name": "ada"}, "id": 1}, {"id": 2},
                             {"value": "a bare string"}]


def test_a_run_without_a_result_has_no_items(client: FlaskClient, key: str,
                                             db: ConnectionPool) -> None:
    run_id = start(client, key)
    assert page(client, key, run_id) == {"items": [], "cursor": None, "total": 0}
    with autocommit(db) as conn:
        store.request_stop(conn, run_id, "USER#user_abc123")
        store.end_unheld_run(conn, run_id, status="STOPPED", error=None, outcome="STOPPED",
                             message="stopped")
    assert page(client, key, run_id) == {"items": [], "cursor": None, "total": 0}
    download = get(client, key, run_id, format="jsonl")
    assert download.status_code == 200 and download.get_data() == b""


# --- downloads -----------------------------------------------------------------------


def test_jsonl_is_one_item_a_line_streamed_as_an_attachment(
        client: FlaskClient, key: str, run_with: Callable[[Any], str]) -> None:
    items = [{"n": n, "text": "line\nbreak, \"quoted\" \u00e9"} for n in range(5000)]
    run_id = run_with(items)
    resp = get(client, key, run_id, format="jsonl")
    assert resp.status_code == 200
    assert resp.is_streamed
    assert resp.mimetype == "application/x-ndjson"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{run_id}.jsonl"'
    lines = resp.get_data().decode().split("\n")
    assert lines[-1] == ""
    assert [json.loads(line) for line in lines[:-1]] == items
    picked = get(client, key, run_id, format="jsonl", fields="n").get_data().decode()
    assert picked.splitlines()[:2] == ['{"n":0}', '{"n":1}']


def read_csv(resp: Any) -> list[list[str]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.is_streamed
    assert resp.mimetype == "text/csv"
    assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.reader(io.StringIO(resp.get_data().decode(), newline="")))


def test_csv_flattens_nested_fields_with_dots(client: FlaskClient, key: str,
                                              run_with: Callable[[Any], str]) -> None:
    run_id = run_with([
        {"id": 1, "author": {"name": "ada", "handle": {"x": "@ada"}}, "tags": ["a", "b"],
         "likes": 3.5, "ok": True, "gone": None},
        {"id": 2, "text": 'comma, "quote"\nnewline', "author": {"name": "bob"}, "ok": False},
        {"id": 3, "nul": "a\u0000b", "meta": {}},
    ])
    rows = read_csv(get(client, key, run_id, format="csv"))
    # Columns in the order they first appear; arrays as JSON; null and missing empty.
    assert rows == [
        ["id", "author.name", "author.handle.x", "tags", "likes", "ok", "gone", "text", "nul"],
        ["1", "ada", "@ada", '["a", "b"]', "3.5", "true", "", "", ""],
        ["2", "bob", "", "", "", "false", "", 'comma, "quote"\nnewline', ""],
        ["3", "", "", "", "", "", "", "", "a\ufffdb"],
    ]


def test_csv_of_a_run_that_ended_before_fields_were_noted_has_the_same_columns(
        client: FlaskClient, key: str, db: ConnectionPool,
        run_with: Callable[[Any], str]) -> None:
    run_id = run_with([{"id": 1, "author": {"name": "ada"}, "tags": ["a"]},
                       {"id": 2, "extra": {"deep": {"er": True}}, "author": {"name": "bob"}},
                       "bare"])
    noted = get(client, key, run_id, format="csv").get_data()
    with autocommit(db) as conn:
        conn.execute("UPDATE runs SET item_fields = NULL WHERE id = %s", (run_id,))
    assert get(client, key, run_id, format="csv").get_data() == noted
    assert noted.decode().splitlines()[0] == "id,author.name,tags,extra.deep.er,value"


def test_csv_fields_choose_the_columns(client: FlaskClient, key: str,
                                       run_with: Callable[[Any], str]) -> None:
    run_id = run_with([{"id": n, "author": {"name": f"u{n}"}, "other": n} for n in range(3000)]
                      + ["bare"])
    rows = read_csv(get(client, key, run_id, format="csv", fields="author.name,id,missing,value"))
    assert rows[0] == ["author.name", "id", "missing", "value"]
    assert rows[1] == ["u0", "0", "", ""]
    assert rows[3000] == ["u2999", "2999", "", ""]
    assert rows[3001] == ["", "", "", "bare"]
    assert len(rows) == 3002


def test_csv_of_a_run_without_items_is_empty_or_its_header(client: FlaskClient,
                                                            key: str) -> None:
    run_id = start(client, key)
    assert get(client, key, run_id, format="csv").get_data() == b""
    assert get(client, key, run_id, format="csv", fields="a,b").get_data() == b"a,b\r\n"


# --- who may read, and asking wrongly --------------------------------------------------


def test_only_the_runs_caller_may_read_its_items(client: FlaskClient, key: str,
                                                 make_key: KeyMaker,
                                                 run_with: Callable[[Any], str]) -> None:
    run_id = run_with([{"secret": 1}])
    other = make_key("user_other")
    for params in ({}, {"format": "jsonl"}, {"format": "csv"}):
        resp = get(client, other, run_id, **params)
        assert resp.status_code == 404
        assert resp.get_json() == {"code": 404, "errorCode": "NOT_FOUND",
                                   "message": f"no run {run_id!r}"}
    for missing in ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "not-a-run-id"):
        assert get(client, key, missing).status_code == 404
    assert client.get(f"/v1/runs/{run_id}/items").status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"format": "xml"}, "format"),
    ({"format": ""}, "format"),
    ({"fields": ""}, "fields"),
    ({"fields": "a,,b"}, "fields"),
    ({"fields": "a..b"}, "fields"),
    ({"fields": ".a"}, "fields"),
    ({"fields": "a,"}, "fields"),
    ({"fields": ".".join(["a"] * 21)}, "fields"),
    ({"fields": ",".join(f"f{n}" for n in range(201))}, "fields"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": cursors.encode_items_cursor("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1)}, "cursor"),
    ({"format": "jsonl", "limit": 10}, "limit"),
    ({"format": "csv", "cursor": "abc"}, "cursor"),
    ({"offset": 10}, "offset"),
])
def test_bad_parameters_are_400_in_the_envelope(client: FlaskClient, key: str,
                                                run_with: Callable[[Any], str],
                                                params: dict[str, Any], field: str) -> None:
    run_id = run_with([{"a": 1}, {"a": 2}])
    resp = get(client, key, run_id, **params)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["errorCode"] == "VALIDATION_FAILED" and body["code"] == 400
    assert set(body["errors"]) == {field}
    assert body["message"].startswith(f"{field}: ")


def test_a_cursor_past_the_end_is_an_empty_last_page(client: FlaskClient, key: str,
                                                     run_with: Callable[[Any], str]) -> None:
    run_id = run_with([{"a": 1}])
    past = cursors.encode_items_cursor(run_id, 5)
    assert page(client, key, run_id, cursor=past) == {"items": [], "cursor": None, "total": 1}


# --- the run itself -------------------------------------------------------------------


def test_a_run_past_the_inline_size_points_at_its_items(client: FlaskClient, key: str,
                                                        run_with: Callable[[Any], str]) -> None:
    items = [{"n": n, "pad": "x" * 1000} for n in range(1000)]
    run_id = run_with(items)
    run = client.get(f"/v1/runs/{run_id}", headers=auth(key)).get_json()
    assert run["outputTruncated"] is True
    assert run["itemsUrl"] == f"/v1/runs/{run_id}/items"
    assert run["resultCount"] == 1000
    assert 0 < len(run["output"]) < 1000 and run["output"] == items[:len(run["output"])]
    assert len(json.dumps(run["output"], separators=(",", ":"))) <= 256 * 1024
    assert page(client, key, run_id)["total"] == 1000
