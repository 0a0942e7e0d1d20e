"""The accept's answer, made by hand on its hot path, is what AcceptedRunSchema dumps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api.schemas import AcceptedRunSchema, accepted_run_answer
from shared.catalog import Price
from shared.hints import after_accept
from shared.jsontext import dumps
from shared.runs import AcceptedRun

RUN_ID = "01KB0Z8Y3M4N5P6Q7R8S9T0V1W"


@pytest.mark.parametrize("price", [
    Price("PER_CALL", 0, None),
    Price("PER_CALL", 3_000, None),
    Price("PER_CALL", 2_000_000, None),
    Price("PER_RESULT", 1_234, 500_000),
    Price("PER_RESULT", 7, 0),
], ids=repr)
@pytest.mark.parametrize("created_at", [
    datetime(2026, 12, 1, 10, 11, 12, 345_678, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
], ids=str)
def test_the_answer_is_the_schemas_dump(price: Price, created_at: datetime) -> None:
    run = AcceptedRun(RUN_ID, "USER#user_abc123", "apify", "Apify", "/apidojo/tweet-scraper",
                      price, created_at, hints=after_accept(RUN_ID))
    dumped = AcceptedRunSchema().dump(run)
    answer = accepted_run_answer(run)
    assert answer == dumped
    assert dumps(answer) == dumps(dumped)  # the same keys in the same order
    assert AcceptedRunSchema().validate(json.loads(dumps(answer))) == {}
