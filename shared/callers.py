"""Who is calling: an API key, checked, as its caller."""

from __future__ import annotations

from dataclasses import dataclass

from shared import store
from shared.db import autocommit
from shared.errors import Unauthorized
from shared.keys import hash_key, hashes_match, key_mode
from shared.services import Services


@dataclass(frozen=True)
class Caller:
    caller: str  # USER#<userId>
    api_key_id: int


def authenticate_key(svc: Services, key: str) -> Caller:
    """The caller of an API key; Unauthorized for a malformed, unknown or revoked one.
    A key found is kept for `API_KEY_CACHE_SECONDS` (see `shared.keycache`)."""
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
    return Caller(caller=found.caller, api_key_id=found.id)
