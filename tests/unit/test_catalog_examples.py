"""Example inputs of the catalog, the words a discovery query searches for, and
the cursors of the endpoint list."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.catalog import Catalog, CatalogError, Endpoint, load_catalog, validate_input
from shared.cursors import decode_endpoints_cursor, encode_endpoints_cursor
from shared.settings import DEFAULT_CATALOG_DIR
from shared.store.catalog import search_terms

CATALOG = load_catalog(DEFAULT_CATALOG_DIR)
ENDPOINTS = CATALOG.all()

ACME: dict[str, Any] = {
    "provider": "acme",
    "name": "Acme",
    "adapter": "http",
    "endpoints": [{
        "path": "/search",
        "name": "Search",
        "description": "Searches posts.",
        "inputSchema": {
            "type": "object",
            "required": ["q"],
            "properties": {"q": {"type": "string", "minLength": 1},
                           "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
            "additionalProperties": False,
        },
        "price": {"type": "PER_CALL", "amount": 0.001},
        "call": {"method": "GET", "baseUrl": "https://api.example.com", "path": "/search"},
    }],
}


def acme(**endpoint_fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(ACME)
    raw["endpoints"][0].update(endpoint_fields)
    return raw


def load(tmp_path: Path, content: dict[str, Any]) -> Catalog:
    (tmp_path / "acme.json").write_text(json.dumps(content))
    return load_catalog(tmp_path)


def broken(tmp_path: Path, content: dict[str, Any]) -> str:
    with pytest.raises(CatalogError) as caught:
        load(tmp_path, content)
    return str(caught.value)


# --- the shipped catalog -------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[f"{e.provider}{e.path}" for e in ENDPOINTS])
def test_every_endpoint_has_an_example_input_that_validates(endpoint: Endpoint) -> None:
    assert endpoint.example_input, f"{endpoint.provider} {endpoint.path} has no exampleInput"
    assert validate_input(endpoint, endpoint.example_input) == {}


def test_composite_endpoints_show_their_example_in_the_composite_form() -> None:
    repo = CATALOG.find("github", "/repos/get")
    search = CATALOG.find("github", "/search/repositories")
    assert repo is not None and search is not None
    assert set(repo.example_input or {}) == {"pathParams"}
    assert set(search.example_input or {}) == {"queryParams"}


def test_every_endpoint_is_described_and_tagged() -> None:
    for endpoint in ENDPOINTS:
        assert endpoint.description.strip()
        assert endpoint.tags, f"{endpoint.provider} {endpoint.path} has no tags"


# --- loading exampleInput --------------------------------------------------------------


def test_an_example_input_is_optional(tmp_path: Path) -> None:
    endpoint = load(tmp_path, acme()).find("acme", "/search")
    assert endpoint is not None
    assert endpoint.example_input is None


def test_an_example_input_is_kept(tmp_path: Path) -> None:
    endpoint = load(tmp_path, acme(exampleInput={"q": "ai", "limit": 5})).find("acme", "/search")
    assert endpoint is not None
    assert endpoint.example_input == {"q": "ai", "limit": 5}


def test_an_example_input_that_fails_the_schema_breaks_the_catalog(tmp_path: Path) -> None:
    message = broken(tmp_path, acme(exampleInput={"limit": 0, "extra": True}))
    assert "acme.json: endpoints/0 (/search): exampleInput" in message
    assert "input.q: is required" in message
    assert "input.limit: must be >= 1" in message
    assert "input.extra: is not allowed" in message


def test_an_example_input_must_be_an_object(tmp_path: Path) -> None:
    message = broken(tmp_path, acme(exampleInput=["q"]))
    assert "exampleInput" in message and "object" in message


def test_a_composite_example_is_checked_part_by_part(tmp_path: Path) -> None:
    path_params = {"type": "object", "required": ["id"],
                   "properties": {"id": {"type": "string", "pattern": "^[0-9]+$"}}}
    fine = acme(pathParamsSchema=path_params,
                exampleInput={"body": {"q": "x"}, "pathParams": {"id": "42"}},
                call={"method": "GET", "baseUrl": "https://api.example.com",
                      "path": "/items/{id}"})
    assert load(tmp_path, fine).find("acme", "/search") is not None
    bad = copy.deepcopy(fine)
    bad["endpoints"][0]["exampleInput"]["pathParams"] = {"id": "abc"}
    assert "input.pathParams.id: must match the pattern" in broken(tmp_path, bad)


def test_endpoints_built_in_code_need_no_example() -> None:
    endpoint = ENDPOINTS[0]
    fields = {k: getattr(endpoint, k) for k in (
        "provider", "provider_name", "path", "name", "description", "tags", "input_schema",
        "query_params_schema", "path_params_schema", "price", "deadline_seconds",
        "max_attempts", "adapter", "call")}
    assert Endpoint(**fields).example_input is None


# --- what a discovery query searches for ----------------------------------------------


@pytest.mark.parametrize(("text", "terms"), [
    ("twitter posts about AI", "twitter or posts or about or AI"),
    ("  google   maps\tplaces ", "google or maps or places"),
    ("find a person's email", "find or a or person or s or email"),
    ("cats OR dogs", "cats or dogs"),  # the user's OR is just a word
    ("-spam \"quoted\" (x) & | ! <->", "spam or quoted or x"),  # no operators get through
    ("café Zürich 2024", "café or Zürich or 2024"),
    ("", ""),
    ("   ", ""),
    ("?!.,;", ""),
])
def test_search_terms_or_the_words(text: str, terms: str) -> None:
    assert search_terms(text) == terms


# --- cursors of the endpoint list -------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize(("provider", "path"), [
    ("apify", "/apidojo/tweet-scraper"),
    ("peopledatalabs", "/v5/person/enrich"),
    ("a", "/x"),
])
def test_cursor_round_trip(provider: str, path: str) -> None:
    cursor = encode_endpoints_cursor(provider, path)
    assert decode_endpoints_cursor(cursor) == (provider, path)
    assert path not in cursor and "=" not in cursor


@pytest.mark.parametrize("cursor", [
    "",
    "garbage",
    "!!!!",
    "é",
    b64(b"not json"),
    b64(b"\xff\xfe"),
    b64(json.dumps({"after": "apify"}).encode()),
    b64(json.dumps({"after": ["apify"]}).encode()),
    b64(json.dumps({"after": ["apify", "/a", "/b"]}).encode()),
    b64(json.dumps({"after": ["apify", 3]}).encode()),
    b64(json.dumps({"after": ["Apify!", "/a"]}).encode()),
    b64(json.dumps({"after": ["apify", "no-slash"]}).encode()),
    b64(json.dumps({"before": "01JGXYZABCDEFGHJKMNPQRSTVW"}).encode()),  # a runs cursor
    b64(json.dumps(["apify", "/a"]).encode()),
])
def test_what_is_not_our_cursor_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor from this API"):
        decode_endpoints_cursor(cursor)
