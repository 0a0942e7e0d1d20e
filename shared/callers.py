"""Who is calling: an API key, checked, as its caller."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from shared import store
from shared.db import DatabaseUnavailable, autocommit
from shared.errors import Unauthorized
from shared.keys import hash_key, hashes_match, key_mode
from shared.services import Services

log = logging.getLogger("monid.keys")


@dataclass(frozen=True)
class Caller:
    caller: str  # USER#<userId>
    api_key_id: int


def authenticate_key(svc: Services, key: str) -> Caller:
    """The caller of an API key; Unauthorized for a malformed, unknown or revoked one.
    A key found is kept for `API_KEY_CACHE_SECONDS` (see `shared.keycache`); its use
    is noted, and written in batches (see `shared.keyuse`)."""
    if key_mode(key) is None:
        raise Unauthorized("malformed API key")
    digest = hash_key(key)
    found = svc.keys.get(digest)
    if found is None:
        with autocommit(svc.pool) as conn:
            found = store.find_api_key(conn, digest)
        if found is not None:
            svc.keys.put(digest, found)
    if found is None or not hashes_match(found.key_hash, digest):
        raise Unauthorized("unknown API key")
    if found.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    svc.key_use.record(found.id)
    write_key_use(svc)
    return Caller(caller=found.caller, api_key_id=found.id)


def write_key_use(svc: Services) -> None:
    """Write when keys were last used, when a write is due and no other thread is
    writing; a failure is logged and its notes kept for the next write."""
    taken = svc.key_use.take()
    if taken is None:
        return
    written = False
    try:
        with autocommit(svc.pool) as conn:
            store.record_api_keys_used(conn, taken)
        written = True
    except (DatabaseUnavailable, psycopg.Error) as exc:
        log.warning("last use of keys not written", extra={"error": str(exc)})
    finally:
        svc.key_use.done(taken, written=written)
