"""Money: dollars on the wire, integer micro-dollars in storage."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest

from shared.money import (
    MICROS_PER_DOLLAR,
    cost_micros,
    dollars_to_micros,
    format_usd,
    micros_to_dollars,
    parse_usd,
)

# --- dollars_to_micros ------------------------------------------------------------


@pytest.mark.parametrize(("amount", "micros"), [
    # exactly half a micro-dollar rounds to the even neighbour
    (0.0000005, 0),
    (0.0000015, 2),
    (0.0000025, 2),
    (0.0000035, 4),
    ("0.0000005", 0),
    ("0.0000015", 2),
    ("0.0000025", 2),
    (Decimal("0.0000045"), 4),
    ("-0.0000015", -2),
    ("-0.0000025", -2),
    # not a tie: ordinary rounding
    ("0.0000004999", 0),
    ("0.0000005001", 1),
    ("0.0000024999", 2),
    ("0.0000025001", 3),
])
def test_half_even_rounding_at_the_micro_dollar(amount: Any, micros: int) -> None:
    assert dollars_to_micros(amount) == micros


@pytest.mark.parametrize(("amount", "micros"), [
    ("0.003", 3000),
    (0.003, 3000),
    (Decimal("0.003"), 3000),
    (Decimal("0.00300"), 3000),
    (1, 1_000_000),
    (0, 0),
    ("0", 0),
    (-2, -2_000_000),
    ("12.5", 12_500_000),
    ("1e2", 100_000_000),
    ("1E-6", 1),
    (0.1 + 0.2, 300_000),  # 0.30000000000000004: the float noise rounds away
    ("  0.25  ", 250_000),
    (10**9, 10**15),
])
def test_amounts_of_every_accepted_type(amount: Any, micros: int) -> None:
    result = dollars_to_micros(amount)
    assert result == micros
    assert type(result) is int


@pytest.mark.parametrize("amount", [
    "abc",
    "",
    "1,000",
    "$1",
    "0.003 USD",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-inf",
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("NaN"),
    Decimal("Infinity"),
    None,
    [1],
])
def test_rejects_what_is_not_an_amount(amount: Any) -> None:
    with pytest.raises(ValueError, match="not an amount of money"):
        dollars_to_micros(amount)


@pytest.mark.parametrize("amount", ["1e30", "123456789012345678901234567"])
def test_an_amount_too_large_to_quantize_raises_value_error(amount: str) -> None:
    with pytest.raises(ValueError):
        dollars_to_micros(amount)


# --- micros_to_dollars ------------------------------------------------------------


@pytest.mark.parametrize(("micros", "dollars"), [
    (0, 0),
    (1_000_000, 1),
    (5_000_000, 5),
    (-2_000_000, -2),
    (10**15, 10**9),
])
def test_whole_dollars_are_ints(micros: int, dollars: int) -> None:
    result = micros_to_dollars(micros)
    assert result == dollars
    assert type(result) is int
    assert json.dumps(result) == str(dollars)


@pytest.mark.parametrize(("micros", "text"), [
    (3000, "0.003"),
    (1, "1e-06"),
    (10, "1e-05"),
    (1_500_000, "1.5"),
    (-3000, "-0.003"),
    (123_456_789, "123.456789"),
    (100_000, "0.1"),
    (300_000, "0.3"),
])
def test_fractions_are_floats_whose_repr_is_the_exact_decimal(micros: int, text: str) -> None:
    result = micros_to_dollars(micros)
    assert type(result) is float
    assert repr(result) == text
    assert json.dumps(result) == text


def test_repr_is_the_exact_decimal_for_many_amounts() -> None:
    rng = random.Random(20260328)
    for _ in range(5000):
        micros = rng.randint(-(10**14), 10**14)
        result = micros_to_dollars(micros)
        assert Decimal(repr(result)) == Decimal(micros) / MICROS_PER_DOLLAR, micros


def test_dollars_and_micros_round_trip() -> None:
    rng = random.Random(7)
    for micros in [0, 1, 999_999, 1_000_001, *(rng.randint(0, 10**13) for _ in range(2000))]:
        assert dollars_to_micros(micros_to_dollars(micros)) == micros


# --- cost_micros ------------------------------------------------------------------


@pytest.mark.parametrize("result_count", [0, 1, 50, 10_000])
def test_per_call_costs_its_amount_whatever_the_result_count(result_count: int) -> None:
    assert cost_micros("PER_CALL", 3000, None, result_count) == 3000
    assert cost_micros("PER_CALL", 3000, None, result_count, max_results=10) == 3000


@pytest.mark.parametrize(("amount", "flat_fee", "count", "max_results", "expected"), [
    (2000, 10_000, 5, None, 20_000),  # flat fee + 5 x amount
    (2000, None, 5, None, 10_000),  # no flat fee
    (2000, 0, 5, None, 10_000),
    (2000, 10_000, 0, None, 10_000),  # nothing delivered: the flat fee only
    (2000, 10_000, 100, 100, 210_000),  # exactly the cap
    (2000, 10_000, 150, 100, 210_000),  # past the cap: capped
    (2000, 10_000, 99, 100, 208_000),  # below the cap: not capped
    (1, None, 10**6, None, 10**6),
    (2000, 10_000, -3, None, 10_000),  # a negative count never lowers the cost
])
def test_per_result_costs_flat_fee_plus_amount_times_count(
    amount: int, flat_fee: int | None, count: int, max_results: int | None, expected: int
) -> None:
    assert cost_micros("PER_RESULT", amount, flat_fee, count, max_results) == expected


# --- amounts typed and printed by operators ----------------------------------------------


@pytest.mark.parametrize(("text", "micros"), [
    ("10", 10_000_000), ("10.00", 10_000_000), ("0.5", 500_000), ("0.000001", 1),
    (" 1.25 ", 1_250_000), ("1000000", 1_000_000_000_000), ("007.1", 7_100_000),
])
def test_typed_amounts_are_read_exactly(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize("text", [
    "1e3", "1E3", "-5", "+5", "1,000", "0.0000015", "10.", ".5", "", "abc", "nan", "inf",
    "1_000", "10 USD", "$10", "١٢",
])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(text)


@pytest.mark.parametrize(("micros", "text"), [
    (0, "0.00"), (10_000_000, "10.00"), (10_500_000, "10.50"), (2_500, "0.0025"),
    (1, "0.000001"), (1_234_000_001_000, "1,234,000.001"), (-2_500_000, "-2.50"),
    (10_000_002, "10.000002"),
])
def test_amounts_print_with_two_decimals_or_as_many_as_they_have(micros: int,
                                                                  text: str) -> None:
    assert format_usd(micros) == text
