"""Money: integer micro-dollars in storage, dollar numbers on the wire."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICROS_PER_DOLLAR = 1_000_000
_MICRO = Decimal("0.000001")
# An amount an operator types: digits, and at most six after the point (a
# micro-dollar); no sign, no exponent, no thousands separators.
_TYPED_USD = re.compile(r"([0-9]{1,13})(?:\.([0-9]{1,6}))?")


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


def parse_usd(text: str) -> int:
    """An amount typed in dollars (`10`, `10.5`, `0.000001`), exactly, as micro-dollars;
    ValueError for anything else (`1e3`, `-5`, `1,000`, a seventh decimal)."""
    match = _TYPED_USD.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not an amount in USD: {text!r}")
    whole, fraction = match.group(1), (match.group(2) or "")
    return int(whole) * MICROS_PER_DOLLAR + int(fraction.ljust(6, "0"))


def format_usd(micros: int) -> str:
    """Micro-dollars for people: two decimals, more only when the amount has them
    (`10.00`, `0.0025`, `1,234.000001`)."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_DOLLAR)
    digits = f"{fraction:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole:,}.{digits}"
