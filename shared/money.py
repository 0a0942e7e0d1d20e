"""Money: integer micro-dollars in storage, dollar numbers on the wire."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICROS_PER_DOLLAR = 1_000_000
_MICRO = Decimal("0.000001")


def dollars_to_micros(amount: str | int | float | Decimal) -> int:
    """Dollars to micro-dollars, rounded half-even to the micro-dollar."""
    try:
        value = Decimal(str(amount))
        if not value.is_finite():
            raise ValueError(f"not an amount of money: {amount!r}")
        return int(value.quantize(_MICRO, rounding=ROUND_HALF_EVEN) * MICROS_PER_DOLLAR)
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {amount!r}") from None


def micros_to_dollars(micros: int) -> float:
    """Micro-dollars as the JSON number of dollars: a whole number stays an int,
    anything else is the float whose shortest form is the exact decimal."""
    if micros % MICROS_PER_DOLLAR == 0:
        return micros // MICROS_PER_DOLLAR
    return float(Decimal(micros) / MICROS_PER_DOLLAR)


def cost_micros(price_type: str, amount_micros: int, flat_fee_micros: int | None,
                result_count: int, max_results: int | None = None) -> int:
    """What a delivered run costs: PER_CALL its amount; PER_RESULT the flat fee plus
    the amount per result (results past the endpoint's maximum are not charged)."""
    if price_type == "PER_CALL":
        return amount_micros
    counted = result_count if max_results is None else min(result_count, max_results)
    return (flat_fee_micros or 0) + amount_micros * max(0, counted)
