"""JSON bodies as RFC 8259 has them: a lone surrogate is refused wherever it is escaped,
and a text without a surrogate's escape is parsed once. The accept's body loaded
without marshmallow when it is the usual one, as the schema loads it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidRequest
from shared.requests import StartRunSchema, load, load_start_run, strict_json_loads


@pytest.mark.parametrize("raw", [
    rb'{"a":"\ud800"}',
    rb'{"a":"\uDFFF"}',
    rb'{"a":"\uDbFf x"}',
    rb'{"\udc00":1}',
    rb'{"a":["ok","\ud83d"]}',
    rb'{"a":"\\\ud800"}',  # an escaped backslash, then the escape
    rb'{"a":"\ude00\ud83d"}',  # a pair the wrong way round
])
def test_a_lone_surrogate_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json_loads(raw)


@pytest.mark.parametrize(("raw", "parsed"), [
    (rb'{"a":"\ud83d\ude00"}', {"a": "\U0001F600"}),
    (rb'{"a":"\\ud800"}', {"a": "\\ud800"}),  # a backslash and the letters, no escape
    (rb'{"a":"\u00e9\uD7FF\uE000"}', {"a": "\u00e9\ud7ff\ue000"}),
    ('{"a":"\u00e9"}'.encode(), {"a": "\u00e9"}),
])
def test_the_rest_parses(raw: bytes, parsed: object) -> None:
    assert strict_json_loads(raw) == parsed


USUAL = {"provider": "demo", "endpoint": "/echo", "input": {"a": [1, {"b": None}]}}


@pytest.mark.parametrize("body", [
    USUAL,
    {**USUAL, "provider": "p" * 100, "endpoint": "/" + "e" * 499},
    {**USUAL, "input": {}},
    {**USUAL, "webhook": {"url": "https://example.com/hook"}},
    {**USUAL, "provider": ""},
    {**USUAL, "provider": "p" * 101},
    {**USUAL, "endpoint": ""},
    {**USUAL, "endpoint": "/" + "e" * 500},
    {**USUAL, "provider": 1},
    {**USUAL, "endpoint": None},
    {**USUAL, "input": []},
    {**USUAL, "input": "x"},
    {**USUAL, "input": None},
    {**USUAL, "extra": 1},
    {"provider": "demo", "endpoint": "/echo"},
    {"endpoint": "/echo", "input": {}},
    {},
], ids=repr)
def test_the_usual_body_loads_as_the_schema_loads_it(body: dict[str, Any]) -> None:
    schema = StartRunSchema()

    def loaded(how: Any) -> Any:
        try:
            return how(schema, dict(body))
        except InvalidRequest as exc:
            return ("refused", exc.errors)

    assert loaded(load_start_run) == loaded(load)
