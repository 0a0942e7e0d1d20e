"""A delivered result, written as the run's items within the result's bounds.

Items are written as they are read. A small result goes in the one statement that
ends the run; a larger one is copied into `run_items` batch by batch inside one
transaction, which the ending statement closes: a crash, a lost lease, a stop or a
bound passed leaves nothing behind, and an attempt tried again cannot add a second
copy. Between batches the writer checks that its attempt still holds the run, that
no stop was asked and that the deadline has not passed. A PER_RESULT run keeps no
more items than it is charged for; past MAX_RESULT_BYTES or MAX_RESULT_ITEMS the
result is refused (ResultTooLarge).

The run's `output` is its whole result up to MAX_INLINE_OUTPUT_BYTES; past it, the
first items that fit, in the answer's own shape, and the run says it is truncated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from shared import store
from shared.db import autocommit, transaction
from shared.scheduling import Freed
from shared.settings import Settings
from shared.store import results
from worker.providers.base import (
    DeadlinePassed,
    MalformedAnswer,
    ProviderResult,
    ResultTooLarge,
)

# How a small result's delivery is written (the runner's: with other threads' ends).
Deliver = Callable[[results.Delivery], results.Delivered | None]

# Items are written in batches of about this size; a result that fits in one batch
# is written by the statement that ends the run.
BATCH_BYTES = 1024 * 1024


class StopAsked(Exception):
    """A stop was asked while the result was being written: nothing was kept."""


class _LeaseLost(Exception):
    pass


def dumps_item(item: Any) -> bytes:
    """An item as compact JSON in UTF-8; MalformedAnswer for NaN or Infinity, which
    JSON does not have."""
    try:
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise MalformedAnswer("the provider's answer holds a number JSON does not have "
                              "(NaN or Infinity)", http_status=200) from None
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: kept as its escape
        return json.dumps(item, separators=(",", ":"), allow_nan=False).encode()


def _dig(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _replace(value: Any, path: Sequence[str], new: Any) -> Any:
    """`value` with what is at `path` replaced by `new` (copies along the path only)."""
    if not path:
        return new
    copied = dict(value)
    copied[path[0]] = _replace(value[path[0]], path[1:], new)
    return copied


def result_items(output: Any, items_path: Sequence[str] | None) -> list[Any]:
    """The items of an answer: the list at `items_path` (nothing if there is nothing
    there); without a path, the answer's own elements if it is a list, else the answer
    as the one item (none for an empty answer)."""
    target = output if items_path is None else _dig(output, items_path)
    if isinstance(target, list):
        return target
    if target is None:
        return []
    return [output]


class FieldPaths:
    """The fields of items, nested ones by their path, in the order they first appear
    (the columns of a CSV of them), up to MAX_ITEM_FIELDS. An empty object is no field;
    an item that is not an object is its own `value`."""

    def __init__(self) -> None:
        self._paths: dict[results.FieldPath, None] = {}

    @property
    def paths(self) -> list[results.FieldPath]:
        return list(self._paths)

    def add(self, item: Any) -> None:
        if len(self._paths) >= results.MAX_ITEM_FIELDS:
            return
        if isinstance(item, dict):
            self._walk(item, ())
        else:
            self._note(("value",))

    def _walk(self, value: dict[str, Any], prefix: results.FieldPath) -> None:
        for key, inner in value.items():
            path = (*prefix, key)
            if isinstance(inner, dict):
                self._walk(inner, path)
            elif path not in self._paths:
                self._note(path)

    def _note(self, path: results.FieldPath) -> None:
        if path not in self._paths and len(self._paths) < results.MAX_ITEM_FIELDS:
            self._paths[path] = None


@dataclass(frozen=True)
class _Shape:
    """Where a result's items sit in its output, and what is left for them inline."""

    output: Any  # the answer, for a document; None for pages
    items_path: tuple[str, ...] | None  # where the list of items is; None: no list
    budget: int  # bytes left for items in the inline output

    @classmethod
    def of(cls, result: ProviderResult, inline_bytes: int) -> _Shape:
        if result.pages is not None:
            return cls(None, (), inline_bytes - 2)  # the output is the list of items
        path = result.items_path or ()
        if isinstance(_dig(result.output, path), list):
            envelope = len(dumps_item(_replace(result.output, path, [])))
            return cls(result.output, path, inline_bytes - envelope)
        return cls(result.output, None, inline_bytes)


class ResultWriter:
    def __init__(self, *, settings: Settings, pool: ConnectionPool) -> None:
        self.settings = settings
        self.pool = pool

    def write(self, claim: store.Claim, result: ProviderResult, *,
              cost_of: Callable[[int], int], deliver: Deliver | None = None,
              freed: Freed | None = None) -> results.Delivered | None:
        """Write the result as the run's items and end the run with it; returns how the
        run ended (STOPPED when a stop won, and the runs handed back from waiting for a
        slot it freed), None when this attempt no longer holds the run. A small result
        is delivered by `deliver` (by default, on its own). Raises
        ResultTooLarge, StopAsked, DeadlinePassed, or what reading the result raises;
        the run is then left as it was, without items."""
        cap = claim.max_results if claim.price_type == "PER_RESULT" else None
        shape = _Shape.of(result, self.settings.max_inline_output_bytes)
        pages: Iterable[Sequence[Any]] = (
            result.pages if result.pages is not None
            else [result_items(result.output, result.items_path)])
        limit_bytes = self.settings.max_result_bytes
        limit_items = self.settings.max_result_items
        count = size = 0
        batch: list[bytes] = []
        batch_bytes = 0
        inline: list[Any] = []  # the first items that fit inline, for pages
        fit = 0  # how many first items fit inline
        fit_bytes = 0
        fields = FieldPaths()
        try:
            with ExitStack() as stack:
                conn: store.Conn | None = None
                for item in _capped(pages, cap):
                    text = dumps_item(item)
                    fields.add(item)
                    count += 1
                    size += len(text)
                    if count > limit_items:
                        raise ResultTooLarge(f"the result has more than {limit_items} items, "
                                             "the most a run may hold")
                    if size > limit_bytes:
                        raise ResultTooLarge(f"the result is over {limit_bytes} bytes, the "
                                             "most a run may hold")
                    if fit == count - 1 and fit_bytes + len(text) + (fit > 0) <= shape.budget:
                        fit += 1
                        fit_bytes += len(text) + (fit > 1)
                        if result.pages is not None:
                            inline.append(item)
                    batch.append(text)
                    batch_bytes += len(text)
                    if batch_bytes >= BATCH_BYTES:
                        if conn is None:
                            conn = stack.enter_context(transaction(self.pool))
                        results.copy_run_items(conn, claim.run_id, count - len(batch), batch)
                        batch, batch_bytes = [], 0
                        self._check(conn, claim)
                output, truncated = self._inline(shape, result, inline, fit, count)
                cost = cost_of(count)
                response = {"httpStatus": result.http_status}

                delivery = results.Delivery(
                    claim, http_status=result.http_status, output=output,
                    output_truncated=truncated, item_count=count, item_fields=fields.paths,
                    items_json=results.items_json(batch), first_seq=count - len(batch),
                    provider_response=response, cost_micros=cost, freed=freed)
                if conn is None:  # all of it in one statement
                    delivered = (deliver or self._deliver_alone)(delivery)
                else:
                    delivered = results.deliver_run(conn, delivery)
                    if delivered is None:
                        raise _LeaseLost()
        except _LeaseLost:
            return None
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()
        return delivered

    def _deliver_alone(self, delivery: results.Delivery) -> results.Delivered | None:
        with autocommit(self.pool) as conn:
            return results.deliver_run(conn, delivery)

    def _check(self, conn: store.Conn, claim: store.Claim) -> None:
        state = results.get_write_state(conn, claim.run_id, claim.lease_token)
        if state is None or not state.held:
            raise _LeaseLost()
        if state.status == "STOPPING":
            raise StopAsked()
        if datetime.now(UTC) >= claim.deadline_at:
            raise DeadlinePassed("the run passed its deadline while its result was read")

    @staticmethod
    def _inline(shape: _Shape, result: ProviderResult, inline: list[Any], fit: int,
                count: int) -> tuple[Any, bool]:
        """The run's `output`, and whether it holds less than the whole result."""
        if result.pages is not None:
            return inline, fit < count
        if shape.items_path is not None:
            items = _dig(shape.output, shape.items_path)
            if fit == len(items):
                return shape.output, False  # all of it, as the provider answered
            kept = _replace(shape.output, shape.items_path, items[:fit])
            if shape.budget < 0:  # the answer around its items is over the size alone
                return None, True
            return kept, fit < count
        whole = result_items(result.output, result.items_path)
        if count < len(whole):  # the one result is not charged for: nothing of it shows
            return None, False
        if fit == count and (count or len(dumps_item(shape.output)) <= shape.budget):
            return shape.output, False
        return None, True


def _capped(pages: Iterable[Sequence[Any]], cap: int | None) -> Iterator[Any]:
    """The items of the pages, no more than `cap` of them (None: all)."""
    taken = 0
    for page in pages:
        for item in page:
            if cap is not None and taken >= cap:
                return
            taken += 1
            yield item
