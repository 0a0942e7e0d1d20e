"""The pure parts of results: an item's JSON, the fields of items, what shows inline,
and the items route's `fields`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.cursors import decode_items_cursor, encode_items_cursor
from shared.items import parse_fields, pick
from shared.store.results import MAX_ITEM_FIELDS
from worker.providers.base import MalformedAnswer, ProviderResult
from worker.results import FieldPaths, ResultWriter, _Shape, dumps_item

RUN_ID = "01JGXYZABCDEFGHJKMNPQRSTVW"


def test_items_are_compact_utf8_json() -> None:
    assert dumps_item({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'.encode()
    assert dumps_item("\ud800") == b'"\\ud800"'  # a lone surrogate stays an escape
    with pytest.raises(MalformedAnswer):
        dumps_item({"x": float("nan")})


def test_fields_in_the_order_they_first_appear() -> None:
    fields = FieldPaths()
    for item in ({"id": 1, "author": {"name": "a", "handle": {"x": 1}}, "tags": [1]},
                 {"id": 2, "meta": {}, "text": "t", "author": {"name": "b", "bio": "c"}},
                 "bare", 7):
        fields.add(item)
    assert fields.paths == [("id",), ("author", "name"), ("author", "handle", "x"), ("tags",),
                            ("text",), ("author", "bio"), ("value",)]


def test_fields_stop_at_their_cap() -> None:
    fields = FieldPaths()
    fields.add({f"f{n}": n for n in range(MAX_ITEM_FIELDS + 10)})
    fields.add({"late": 1})
    assert len(fields.paths) == MAX_ITEM_FIELDS and ("late",) not in fields.paths


def inline(result: ProviderResult, items: list[Any], budget: int, count: int | None = None
           ) -> tuple[Any, bool]:
    """What the writer shows inline of `items` (the result's, maybe cut by a cap)."""
    shape = _Shape.of(result, budget)
    count = len(items) if count is None else count
    fit = used = 0
    for item in items[:count]:
        size = len(dumps_item(item)) + (fit > 0)
        if used + size > shape.budget:
            break
        fit, used = fit + 1, used + size
    return ResultWriter._inline(shape, result, items[:fit], fit, count)


def test_pages_show_the_first_items_that_fit() -> None:
    items = [{"n": n} for n in range(10)]  # 7 bytes each, and a comma between
    pages = ProviderResult(pages=[items])
    assert inline(pages, items, 1000) == (items, False)
    assert inline(pages, items, 2 + 7 * 3 + 2) == (items[:3], True)
    assert inline(pages, items, 0) == ([], True)


def test_an_answer_keeps_its_shape_with_its_list_cut_short() -> None:
    answer = {"requestId": "r", "results": [{"n": n} for n in range(10)]}
    result = ProviderResult(output=answer, items_path=("results",))
    envelope = len(json.dumps({"requestId": "r", "results": []}, separators=(",", ":")))
    assert inline(result, answer["results"], 1000) == (answer, False)
    shown, cut = inline(result, answer["results"], envelope + 7 * 2 + 1)
    assert (shown, cut) == ({"requestId": "r", "results": answer["results"][:2]}, True)
    # A cap (PER_RESULT) keeps 4: all of them shown, nothing past them.
    assert inline(result, answer["results"], 1000, count=4) == (
        {"requestId": "r", "results": answer["results"][:4]}, False)
    assert inline(result, answer["results"], envelope - 1) == (None, True)


def test_an_answer_that_is_one_item_is_shown_whole_or_not_at_all() -> None:
    answer = {"data": {"name": "x" * 100}}
    result = ProviderResult(output=answer)
    assert inline(result, [answer], 1000) == (answer, False)
    assert inline(result, [answer], 50) == (None, True)
    assert inline(result, [answer], 1000, count=0) == (None, False)  # a cap of 0
    empty = ProviderResult(output={"data": {}}, items_path=("data", "items"))
    assert inline(empty, [], 1000) == ({"data": {}}, False)
    assert inline(ProviderResult(output=None), [], 1000) == (None, False)


def test_fields_parameter() -> None:
    assert parse_fields(None) is None
    assert parse_fields("id,author.name,id") == [("id",), ("author", "name")]
    for bad in ("", ",", "a,,b", "a.", ".a", "a..b"):
        with pytest.raises(ValueError):
            parse_fields(bad)


def test_picking_fields_keeps_their_nesting() -> None:
    item = {"id": 1, "author": {"name": "ada", "age": 3}, "tags": ["x"]}
    assert pick(item, [("author", "name"), ("id",), ("missing",), ("tags",)]) == {
        "author": {"name": "ada"}, "id": 1, "tags": ["x"]}
    assert pick(item, [("id", "deeper")]) == {}
    assert pick("bare", [("value",)]) == {"value": "bare"}
    assert pick("bare", [("id",)]) == {}


def test_items_cursors_belong_to_their_run() -> None:
    cursor = encode_items_cursor(RUN_ID, 1234)
    assert decode_items_cursor(cursor, RUN_ID) == 1234
    for bad in ("x", "", encode_items_cursor("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1)):
        with pytest.raises(ValueError):
            decode_items_cursor(bad, RUN_ID)
