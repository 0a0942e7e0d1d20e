"""The catalog: loading and checking its files, and validating a run's input against it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

import shared.catalog
from shared.catalog import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    Catalog,
    CatalogError,
    Endpoint,
    Price,
    is_composite,
    load_catalog,
    split_input,
    validate_input,
)
from shared.catalog.adapters import ENTRY_POINT_GROUP, adapter_kinds, kind_of
from shared.settings import DEFAULT_CATALOG_DIR

SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["searchTerms"],
    "properties": {
        "searchTerms": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "maxItems": {"type": "integer", "minimum": 1, "maximum": 1000},
        "mode": {"type": "string", "enum": ["fast", "full"]},
        "lang": {"type": "string", "pattern": "^[a-z]{2}$"},
        "author": {
            "type": "object",
            "required": ["handle"],
            "properties": {"handle": {"type": "string", "minLength": 2}},
        },
    },
    "additionalProperties": False,
}


def endpoint_json(path: str = "/search", **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "path": path,
        "name": "Search",
        "description": "Searches posts.",
        "inputSchema": copy.deepcopy(SEARCH_SCHEMA),
        "price": {"type": "PER_CALL", "amount": 0.003},
        "call": {"method": "POST", "baseUrl": "https://api.example.com", "path": path},
    }
    raw.update(overrides)
    return raw


def provider_json(*endpoints: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "provider": "acme",
        "name": "Acme",
        "adapter": "http",
        "endpoints": list(endpoints) or [endpoint_json()],
    }
    raw.update(overrides)
    return raw


def write(folder: Path, name: str, content: Any) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load_one(tmp_path: Path, content: Any, name: str = "acme.json") -> Catalog:
    write(tmp_path, name, content)
    return load_catalog(tmp_path)


def broken(tmp_path: Path, content: Any, name: str = "acme.json") -> str:
    write(tmp_path, name, content)
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    return str(caught.value)


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_catalog(DEFAULT_CATALOG_DIR)


@pytest.fixture
def search(tmp_path: Path) -> Endpoint:
    ep = endpoint_json(queryParamsSchema={
        "type": "object",
        "properties": {"token": {"type": "string", "minLength": 3}},
        "additionalProperties": False,
    })
    found = load_one(tmp_path, provider_json(ep)).find("acme", "/search")
    assert found is not None
    return found


# --- the default catalog -----------------------------------------------------------


def test_default_catalog_has_the_demo_endpoints(demo: Catalog) -> None:
    assert [p for p, _ in demo.endpoints if p == "demo"] == ["demo"] * 3
    assert {path for p, path in demo.endpoints if p == "demo"} == {"/echo", "/fail", "/sleep"}
    assert demo.provider_names["demo"] == "Demo"
    assert [e.path for e in demo.all() if e.provider == "demo"] == ["/echo", "/fail", "/sleep"]


def test_default_catalog_has_the_seed_endpoint() -> None:
    catalog = load_catalog(DEFAULT_CATALOG_DIR)
    seed = catalog.find("apify", "/apidojo/tweet-scraper")
    assert seed is not None
    assert seed.provider_name == "Apify"
    assert seed.price == Price("PER_CALL", 3000)
    assert validate_input(seed, {"searchTerms": ["AI"], "maxItems": 10}) == {}
    assert "input.maxItems" in validate_input(seed, {"searchTerms": ["AI"], "maxItems": 0})


@pytest.mark.parametrize(("path", "action"), [
    ("/echo", "echo"), ("/sleep", "sleep"), ("/fail", "fail"),
])
def test_demo_endpoints_are_free_per_call_demo_calls(
    demo: Catalog, path: str, action: str
) -> None:
    endpoint = demo.find("demo", path)
    assert endpoint is not None
    assert endpoint.provider == "demo"
    assert endpoint.provider_name == "Demo"
    assert endpoint.adapter == "demo"
    assert endpoint.price == Price(type="PER_CALL", amount_micros=0)
    assert dict(endpoint.call) == {"action": action}
    assert endpoint.description
    assert "demo" in endpoint.tags
    assert set(endpoint.validators) == {"body"}


def test_find_unknown_endpoints(demo: Catalog) -> None:
    assert demo.find("demo", "/nope") is None
    assert demo.find("apify", "/echo") is None
    assert demo.find("demo", "echo") is None


def test_demo_inputs(demo: Catalog) -> None:
    fail, sleep, echo = (demo.find("demo", p) for p in ("/fail", "/sleep", "/echo"))
    assert fail is not None and sleep is not None and echo is not None
    assert validate_input(echo, {"anything": [1, {"at": "all"}]}) == {}
    assert validate_input(sleep, {"seconds": 0.05}) == {}
    assert validate_input(sleep, {}) == {"input.seconds": ["is required"]}
    assert validate_input(sleep, {"seconds": 601}) == {"input.seconds": ["must be <= 600"]}
    assert validate_input(fail, {"status": 503, "times": 2}) == {}
    assert validate_input(fail, {"status": 200, "times": -1, "x": 1}) == {
        "input.status": ["must be >= 400"],
        "input.times": ["must be >= 0"],
        "input.x": ["is not allowed"],
    }
    assert validate_input(fail, {"status": 1.5}) == {
        "input.status": ["must be of type integer", "must be >= 400"],
    }


# --- loading a catalog ---------------------------------------------------------------


def test_a_valid_catalog_loads_with_defaults(tmp_path: Path) -> None:
    catalog = load_one(tmp_path, provider_json())
    endpoint = catalog.find("acme", "/search")
    assert endpoint is not None
    assert endpoint.provider_name == "Acme"
    assert endpoint.adapter == "http"
    assert endpoint.price == Price("PER_CALL", 3000)
    assert endpoint.deadline_seconds == DEFAULT_DEADLINE_SECONDS == 900
    assert endpoint.max_attempts == DEFAULT_MAX_ATTEMPTS == 5
    assert endpoint.tags == ()
    assert dict(endpoint.call) == {"method": "POST", "baseUrl": "https://api.example.com",
                                   "path": "/search"}
    assert endpoint.query_params_schema is None
    assert endpoint.path_params_schema is None


def test_per_result_price_is_read_exactly(tmp_path: Path) -> None:
    price = {"type": "PER_RESULT", "amount": 0.0015, "flatFee": "0.01", "maxResults": 1000}
    catalog = load_one(tmp_path, provider_json(endpoint_json(price=price)))
    endpoint = catalog.find("acme", "/search")
    assert endpoint is not None
    assert endpoint.price == Price("PER_RESULT", 1500, 10_000, 1000)


def test_files_are_merged_and_non_json_files_ignored(tmp_path: Path) -> None:
    write(tmp_path, "acme.json", provider_json(endpoint_json("/search")))
    write(tmp_path, "acme-more.json", provider_json(endpoint_json("/profile")))
    write(tmp_path, "other.json", provider_json(endpoint_json("/search", call={}),
                                                provider="other", name="Other", adapter="apify"))
    write(tmp_path, "README.md", "not a catalog file {")
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.endpoints) == [
        ("acme", "/profile"), ("acme", "/search"), ("other", "/search"),
    ]
    assert catalog.provider_names == {"acme": "Acme", "other": "Other"}


def test_invalid_json(tmp_path: Path) -> None:
    message = broken(tmp_path, '{"provider": "acme", ', name="acme.json")
    assert "acme.json" in message
    assert "not valid JSON" in message


@pytest.mark.parametrize("missing", ["provider", "name", "adapter", "endpoints"])
def test_missing_top_level_field(tmp_path: Path, missing: str) -> None:
    raw = provider_json()
    del raw[missing]
    message = broken(tmp_path, raw)
    assert "acme.json" in message
    assert f"'{missing}' is a required property" in message


@pytest.mark.parametrize("missing", ["path", "name", "description", "inputSchema", "price"])
def test_missing_endpoint_field(tmp_path: Path, missing: str) -> None:
    raw = endpoint_json()
    del raw[missing]
    message = broken(tmp_path, provider_json(raw))
    assert "acme.json" in message
    assert "endpoints/0" in message
    assert f"'{missing}' is a required property" in message


def test_unknown_adapter(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(adapter="ftp"))
    assert "acme.json" in message
    assert "adapter" in message
    assert "'ftp' is not one of" in message


def test_the_adapters_are_those_the_package_registers() -> None:
    from importlib.metadata import entry_points

    registered = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert registered == {"demo": "worker.providers.demo:DemoAdapter",
                          "apify": "worker.providers.apify:ApifyAdapter",
                          "http": "worker.providers.http:HttpAdapter"}
    assert set(adapter_kinds()) == set(registered)


class FtpAdapter:
    """A provider kind the catalog has never heard of: it brings its own call schema."""

    CALL_SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object", "required": ["host"], "additionalProperties": False,
        "properties": {"host": {"type": "string"}}}

    @staticmethod
    def check_call(call: dict[str, Any], endpoint: dict[str, Any]) -> list[str]:
        return [] if call["host"].endswith(".example") else ["call/host must be .example"]


def test_a_new_adapter_is_checked_by_its_own_call_schema(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.catalog, "adapter_kinds",
                        lambda: {**adapter_kinds(), "ftp": kind_of("ftp", FtpAdapter)})
    catalog = load_one(tmp_path, provider_json(
        endpoint_json(call={"host": "files.example"}), adapter="ftp"))
    assert dict(catalog.all()[0].call) == {"host": "files.example"}
    message = broken(tmp_path, provider_json(
        endpoint_json(call={"host": "files.example", "port": 21}), adapter="ftp"))
    assert "endpoints/0 (/search): call/(top): Additional properties are not allowed" in message
    message = broken(tmp_path, provider_json(endpoint_json(call={"host": "x.org"}),
                                             adapter="ftp"))
    assert message.endswith("acme.json: endpoints/0 (/search): call/host must be .example")


@pytest.mark.parametrize("schema_key", ["inputSchema", "queryParamsSchema", "pathParamsSchema"])
def test_invalid_json_schema(tmp_path: Path, schema_key: str) -> None:
    raw = endpoint_json()
    raw[schema_key] = {"type": "bogus"}
    message = broken(tmp_path, provider_json(raw))
    assert "acme.json" in message
    assert "/search" in message
    assert "not a valid JSON Schema" in message


def test_input_schema_that_is_not_an_object(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(endpoint_json(inputSchema=["type", "object"])))
    assert "acme.json" in message
    assert "endpoints/0/inputSchema" in message


def test_duplicate_endpoint_in_one_file(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(endpoint_json("/search"), endpoint_json("/search")))
    assert "acme.json" in message
    assert "endpoint acme /search is declared twice" in message


def test_duplicate_endpoint_across_files(tmp_path: Path) -> None:
    write(tmp_path, "a.json", provider_json(endpoint_json("/search")))
    message = broken(tmp_path, provider_json(endpoint_json("/search")), name="b.json")
    assert "b.json: endpoint acme /search is declared twice" in message


def test_one_provider_with_two_names(tmp_path: Path) -> None:
    write(tmp_path, "a.json", provider_json(endpoint_json("/one")))
    message = broken(tmp_path, provider_json(endpoint_json("/two"), name="ACME Inc"),
                     name="b.json")
    assert "b.json: provider acme is declared twice" in message


def test_per_result_without_max_results(tmp_path: Path) -> None:
    price = {"type": "PER_RESULT", "amount": 0.001}
    message = broken(tmp_path, provider_json(endpoint_json(price=price)))
    assert "acme.json" in message
    assert "/search" in message
    assert "PER_RESULT needs maxResults" in message


@pytest.mark.parametrize(("price", "fragment"), [
    ({"type": "PER_CALL", "amount": 0.003, "flatFee": 0.01}, "for PER_RESULT only"),
    ({"type": "PER_CALL", "amount": 0.003, "maxResults": 10}, "for PER_RESULT only"),
    ({"type": "PER_CALL", "amount": -0.003}, "must not be negative"),
    ({"type": "PER_RESULT", "amount": 0.001, "flatFee": -1, "maxResults": 5},
     "must not be negative"),
    ({"type": "PER_CALL", "amount": "cheap"}, "not an amount of money"),
    ({"type": "PER_CALL", "amount": "NaN"}, "not an amount of money"),
    ({"type": "PER_SECOND", "amount": 1}, "'PER_SECOND' is not one of"),
    ({"type": "PER_RESULT", "amount": 1, "maxResults": 0}, "price/maxResults"),
    ({"type": "PER_CALL"}, "'amount' is a required property"),
])
def test_bad_prices(tmp_path: Path, price: dict[str, Any], fragment: str) -> None:
    message = broken(tmp_path, provider_json(endpoint_json(price=price)))
    assert "acme.json" in message
    assert fragment in message


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"provider": "Acme Corp"}, "provider"),
    ({"endpoints": []}, "endpoints"),
    ({"surprise": True}, "'surprise' was unexpected"),
])
def test_bad_provider_fields(tmp_path: Path, overrides: dict[str, Any], fragment: str) -> None:
    message = broken(tmp_path, provider_json(**overrides))
    assert "acme.json" in message
    assert fragment in message


def test_bad_endpoint_path(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(endpoint_json("no-leading-slash")))
    assert "acme.json" in message
    assert "endpoints/0/path" in message


def test_every_problem_of_every_file_is_listed(tmp_path: Path) -> None:
    write(tmp_path, "a.json", "[1, 2,")
    write(tmp_path, "b.json", provider_json(adapter="ftp"))
    write(tmp_path, "c.json", provider_json(
        endpoint_json(price={"type": "PER_RESULT", "amount": 1}), provider="cee"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "a.json: not valid JSON" in message
    assert "b.json: adapter" in message
    assert "c.json" in message and "PER_RESULT needs maxResults" in message


def test_empty_folder(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "nothing here")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(tmp_path) in str(caught.value)
    assert "no *.json files" in str(caught.value)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"no \*\.json files"):
        load_catalog(tmp_path / "absent")


def test_a_huge_price_is_a_catalog_error(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(endpoint_json(
        price={"type": "PER_CALL", "amount": "1e30"})))
    assert "acme.json" in message


# --- is_composite and split_input ------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ({"body": {}}, True),
    ({"body": {"searchTerms": ["AI"]}}, True),
    ({"queryParams": {"token": "abc"}}, True),
    ({"pathParams": {}}, True),
    ({"body": {}, "queryParams": {}, "pathParams": {}}, True),
    ({}, False),  # empty: flat
    ({"searchTerms": ["AI"], "maxItems": 10}, False),
    ({"body": {}, "maxItems": 10}, False),  # one key is not a part
    ({"body": ["a"]}, False),  # a part that is not an object
    ({"body": "text"}, False),
    ({"body": None}, False),
    ({"queryParams": {}, "pathParams": 3}, False),
    ({"Body": {}}, False),
    ({"query": {}}, False),
])
def test_is_composite(value: dict[str, Any], expected: bool) -> None:
    assert is_composite(value) is expected


def test_split_flat_input() -> None:
    value = {"searchTerms": ["AI"], "maxItems": 10}
    assert split_input(value) == {"body": value, "queryParams": {}, "pathParams": {}}
    assert split_input({}) == {"body": {}, "queryParams": {}, "pathParams": {}}
    # a flat input that merely has a key named "body" stays whole
    mixed = {"body": {"a": 1}, "limit": 5}
    assert split_input(mixed) == {"body": mixed, "queryParams": {}, "pathParams": {}}


def test_split_composite_input_fills_missing_parts() -> None:
    assert split_input({"queryParams": {"token": "abc"}}) == {
        "body": {}, "queryParams": {"token": "abc"}, "pathParams": {},
    }
    full = {"body": {"a": 1}, "queryParams": {"b": 2}, "pathParams": {"c": 3}}
    assert split_input(full) == full


def test_split_input_copies() -> None:
    value = {"body": {"a": 1}}
    parts = split_input(value)
    parts["body"]["a"] = 2
    parts["queryParams"]["x"] = 1
    assert value == {"body": {"a": 1}}
    flat = {"a": 1}
    split_input(flat)["body"]["a"] = 2
    assert flat == {"a": 1}


# --- validate_input ----------------------------------------------------------------------

VALID = {"searchTerms": ["AI"], "maxItems": 10, "mode": "fast", "lang": "en",
         "author": {"handle": "ab"}}


def test_valid_inputs_have_no_errors(search: Endpoint) -> None:
    assert validate_input(search, VALID) == {}
    assert validate_input(search, {"body": VALID}) == {}
    assert validate_input(search, {"body": VALID, "queryParams": {"token": "abc"}}) == {}


def test_flat_field_path(search: Endpoint) -> None:
    assert validate_input(search, {"searchTerms": ["AI"], "maxItems": 0}) == {
        "input.maxItems": ["must be >= 1"],
    }


def test_composite_field_path(search: Endpoint) -> None:
    assert validate_input(search, {"body": {"searchTerms": ["AI"], "maxItems": 0}}) == {
        "input.body.maxItems": ["must be >= 1"],
    }


def test_every_failing_field_is_listed(search: Endpoint) -> None:
    errors = validate_input(search, {
        "searchTerms": [], "maxItems": 1001, "mode": "slow", "lang": "ENG", "extra": 1,
        "author": {"handle": "x"},
    })
    assert errors == {
        "input.author.handle": ["must be at least 2 characters long"],
        "input.extra": ["is not allowed"],
        "input.lang": ["must match the pattern ^[a-z]{2}$"],
        "input.maxItems": ["must be <= 1000"],
        "input.mode": ['must be one of "fast", "full"'],
        "input.searchTerms": ["must have at least 1 items"],
    }
    assert list(errors) == sorted(errors)


def test_required_fields(search: Endpoint) -> None:
    assert validate_input(search, {}) == {"input.searchTerms": ["is required"]}
    assert validate_input(search, {"body": {}}) == {"input.body.searchTerms": ["is required"]}
    assert validate_input(search, {"searchTerms": ["x"], "author": {}}) == {
        "input.author.handle": ["is required"],
    }


def test_nested_item_paths(search: Endpoint) -> None:
    assert validate_input(search, {"searchTerms": ["ok", 5, None]}) == {
        "input.searchTerms.1": ["must be of type string"],
        "input.searchTerms.2": ["must be of type string"],
    }
    assert validate_input(search, {"body": {"searchTerms": ["ok", 5]}}) == {
        "input.body.searchTerms.1": ["must be of type string"],
    }


def test_type_errors(search: Endpoint) -> None:
    assert validate_input(search, {"searchTerms": "AI", "maxItems": "10"}) == {
        "input.maxItems": ["must be of type integer"],
        "input.searchTerms": ["must be of type array"],
    }


def test_query_params_are_checked_against_their_schema(search: Endpoint) -> None:
    errors = validate_input(search, {"body": VALID, "queryParams": {"token": "ab", "x": 1}})
    assert errors == {
        "input.queryParams.token": ["must be at least 3 characters long"],
        "input.queryParams.x": ["is not allowed"],
    }


def test_parts_the_endpoint_does_not_take(search: Endpoint) -> None:
    errors = validate_input(search, {"body": VALID, "pathParams": {"id": "1"}})
    assert errors == {"input.pathParams": ["this endpoint takes no pathParams"]}
    # an empty part it does not take is fine
    assert validate_input(search, {"body": VALID, "pathParams": {}}) == {}


def test_errors_of_body_and_query_params_together(search: Endpoint) -> None:
    errors = validate_input(search, {"body": {"maxItems": 0}, "queryParams": {"token": 1}})
    assert errors == {
        "input.body.maxItems": ["must be >= 1"],
        "input.body.searchTerms": ["is required"],
        "input.queryParams.token": ["must be of type string"],
    }


@pytest.mark.parametrize("flat", [
    {},
    {"searchTerms": ["AI"], "maxItems": 0},
    {"searchTerms": [1], "mode": "x", "extra": True},
    VALID,
])
def test_flat_input_is_the_same_as_a_body(search: Endpoint, flat: dict[str, Any]) -> None:
    as_flat = validate_input(search, flat)
    as_body = validate_input(search, {"body": flat})
    assert as_body == {k.replace("input.", "input.body.", 1): v for k, v in as_flat.items()}
    assert bool(as_flat) is (flat is not VALID)


def test_a_flat_input_that_looks_half_composite_is_flat(search: Endpoint) -> None:
    # "body" with another key: not composite, so "body" is an unknown field of the body
    errors = validate_input(search, {"body": {"searchTerms": ["AI"]}, "maxItems": 5})
    assert errors == {"input.body": ["is not allowed"], "input.searchTerms": ["is required"]}


@pytest.mark.parametrize(("prop", "bad"), [
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, []),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, []),
    ({"enum": [1, 2, 3]}, 4),
])
def test_any_failing_keyword_gives_field_errors(
    tmp_path: Path, prop: dict[str, Any], bad: Any
) -> None:
    schema = {"type": "object", "properties": {"x": prop}}
    endpoint = load_one(tmp_path, provider_json(endpoint_json(inputSchema=schema)))
    found = endpoint.find("acme", "/search")
    assert found is not None
    errors = validate_input(found, {"x": bad})
    assert list(errors) == ["input.x"]
    assert len(errors["input.x"]) == 1


def test_a_fractional_schema_keyword_validates_float_input(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {
        "step": {"type": "number", "multipleOf": 0.5},
        "ratio": {"type": "number", "minimum": 0.5},
    }}
    catalog = load_one(tmp_path, provider_json(endpoint_json(inputSchema=schema)))
    found = catalog.find("acme", "/search")
    assert found is not None
    assert json.loads(json.dumps(found.input_schema)) == schema
    assert validate_input(found, {"step": 1.5, "ratio": 0.75}) == {}
    assert validate_input(found, {"ratio": 0.25}) == {"input.ratio": ["must be >= 0.5"]}


# --- concurrency limits ------------------------------------------------------------------


def test_providers_and_endpoints_may_have_a_concurrency_limit(tmp_path: Path) -> None:
    catalog = load_one(tmp_path, provider_json(endpoint_json("/search", maxConcurrent=2),
                                               endpoint_json("/profile"), maxConcurrent=25))
    assert catalog.provider_limits == {"acme": 25}
    search = catalog.find("acme", "/search")
    profile = catalog.find("acme", "/profile")
    assert search is not None and search.max_concurrent == 2
    assert profile is not None and profile.max_concurrent is None


@pytest.mark.parametrize("limit", [0, -1, 2.5, "3", True, None])
@pytest.mark.parametrize("where", ["provider", "endpoint"])
def test_a_concurrency_limit_must_be_a_positive_integer(tmp_path: Path, limit: Any,
                                                        where: str) -> None:
    if where == "provider":
        raw = provider_json(maxConcurrent=limit)
    else:
        raw = provider_json(endpoint_json(maxConcurrent=limit))
    message = broken(tmp_path, raw)
    assert "acme.json" in message and "maxConcurrent" in message
    assert "\n" not in message
# --- patterns and path parameters --------------------------------------------------------


@pytest.mark.parametrize(("value", "valid"), [
    ("en", True), ("en\n", False), ("\nen", False), ("eng", False), ("e\nn", False)])
def test_patterns_match_the_whole_text_as_json_schema_says(search: Endpoint, value: str,
                                                           valid: bool) -> None:
    # `$` is the very end of the text (ECMA-262), not "before a final newline" (Python).
    errors = validate_input(search, {"searchTerms": ["AI"], "lang": value})
    assert (errors == {}) is valid, errors
    if not valid:
        assert errors == {"input.lang": ["must match the pattern ^[a-z]{2}$"]}


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^[$a]+$", "$a", True),         # a `$` in a class is a dollar sign
    ("^[^$]+$", "a$", False),
    ("^a\\$$", "a$", True),           # an escaped `$` too
    ("^a\\$$", "a$\n", False),
    ("^[]$]$", "]", True),
    ("^(x|y)$", "y\n", False),
])
def test_only_a_bare_dollar_means_the_end(pattern: str, text: str, matches: bool) -> None:
    from shared.catalog import ecma_pattern

    assert bool(ecma_pattern(pattern).search(text)) is matches


def test_pattern_properties_match_the_whole_name_too(tmp_path: Path) -> None:
    schema = {"type": "object", "patternProperties": {"^x_[a-z]+$": {"type": "integer"}},
              "additionalProperties": False}
    endpoint = load_one(tmp_path, provider_json(endpoint_json(inputSchema=schema))
                        ).find("acme", "/search")
    assert endpoint is not None
    assert validate_input(endpoint, {"x_ok": 1}) == {}
    assert validate_input(endpoint, {"x_ok\n": 1}) == {"input.x_ok\n": ["is not allowed"]}


def test_an_endpoint_path_with_a_final_newline_is_refused(tmp_path: Path) -> None:
    message = broken(tmp_path, provider_json(endpoint_json("/search\n")))
    assert "endpoints/0/path" in message


@pytest.mark.parametrize("bad", [".", "..", ""])
def test_dot_segments_and_empty_path_parameters_are_refused(tmp_path: Path, bad: str) -> None:
    endpoint = load_one(tmp_path, provider_json(endpoint_json(
        "/repos/get", inputSchema={"type": "object"},
        pathParamsSchema={"type": "object", "required": ["owner", "repo"],
                          "properties": {"owner": {"type": "string"},
                                         "repo": {"type": "string"}}},
        call={"method": "GET", "baseUrl": "https://api.example.com",
              "path": "/repos/{owner}/{repo}"}))).find("acme", "/repos/get")
    assert endpoint is not None
    good = {"pathParams": {"owner": "octocat", "repo": "hello.world"}}
    assert validate_input(endpoint, good) == {}
    bad_input = {"pathParams": {"owner": "octocat", "repo": bad}}
    assert validate_input(endpoint, bad_input) == {
        "input.pathParams.repo": ["must not be empty, '.' or '..'"]}


def test_the_github_endpoint_refuses_a_parent_segment(demo: Catalog) -> None:
    endpoint = demo.find("github", "/repos/get")
    assert endpoint is not None
    # Its own pattern allows dots in a repository's name; `..` would reach /repos/{owner}.
    errors = validate_input(endpoint, {"pathParams": {"owner": "octocat", "repo": ".."}})
    assert errors == {"input.pathParams.repo": ["must not be empty, '.' or '..'"]}
