"""List cursors: where the next page of a list starts, as an opaque URL-safe token
(base64url of a small JSON object, unpadded). One codec, and one pair of functions per
list: its runs, the catalog's endpoints, a run's items. Decoding says ValueError for
anything this API did not make."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from shared.ids import is_run_id
from shared.jsontext import dumps

NOT_OURS = "not a cursor from this API"
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


def encode(fields: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(dumps(fields).encode()).decode().rstrip("=")


def decode(cursor: str, *names: str) -> tuple[Any, ...]:
    """The values of `names` in the cursor's object (padded or not)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        return tuple(data[name] for name in names)
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ValueError(NOT_OURS) from None


def encode_runs_cursor(run_id: str) -> str:
    return encode({"before": run_id})


def decode_runs_cursor(cursor: str) -> str:
    """The run ID a cursor of a caller's runs points before."""
    (before,) = decode(cursor, "before")
    if not isinstance(before, str) or not is_run_id(before):
        raise ValueError(NOT_OURS)
    return before


def encode_endpoints_cursor(provider: str, path: str) -> str:
    return encode({"after": [provider, path]})


def decode_endpoints_cursor(cursor: str) -> tuple[str, str]:
    """The (provider, path) a cursor of the catalog's endpoints points after."""
    (after,) = decode(cursor, "after")
    try:
        provider, path = after
    except (ValueError, TypeError):
        raise ValueError(NOT_OURS) from None
    if not (isinstance(provider, str) and isinstance(path, str)
            and _PROVIDER.fullmatch(provider) and _PATH.fullmatch(path)):
        raise ValueError(NOT_OURS)
    return provider, path


def encode_items_cursor(run_id: str, seq: int) -> str:
    return encode({"run": run_id, "at": seq})


def decode_items_cursor(cursor: str, run_id: str) -> int:
    """The item a cursor of this run's items points at."""
    run, at = decode(cursor, "run", "at")
    if run != run_id or not isinstance(at, int) or isinstance(at, bool) or at < 0:
        raise ValueError("not a cursor of this run's items")
    return at


def encode_keys_cursor(key_id: int) -> str:
    return encode({"afterKey": key_id})


def decode_keys_cursor(cursor: str) -> int:
    """The key a cursor of a user's keys points after."""
    (after,) = decode(cursor, "afterKey")
    if not isinstance(after, int) or isinstance(after, bool) or not 0 < after < 2 ** 63:
        raise ValueError(NOT_OURS)
    return after


def _query_tag(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def encode_offset_cursor(query: str, offset: int) -> str:
    """Where a page of the results of `query` starts (the query kept as a short hash,
    so that the cursor stays short)."""
    return encode({"q": _query_tag(query), "at": offset})


def decode_offset_cursor(cursor: str, query: str) -> int:
    """Where a page of the results of `query` starts."""
    q, at = decode(cursor, "q", "at")
    if q != _query_tag(query) or not isinstance(at, int) or isinstance(at, bool) \
            or not 0 < at < 10_000:
        raise ValueError("not a cursor of this query's results")
    return at
