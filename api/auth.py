"""Bearer API keys: who is calling."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g, request

from api.errors import ApiError
from api.ratelimit import check_rate
from api.services import services
from shared import store
from shared.db import reading
from shared.keys import hash_key, hashes_match, key_mode


@dataclass(frozen=True)
class Caller:
    caller: str
    api_key_id: int


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


def authenticate() -> Caller:
    """The caller of the request's key; 401 for a missing, malformed, unknown or revoked key."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise _unauthorized("missing Authorization header: send 'Authorization: Bearer <api-key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("malformed Authorization header: expected 'Bearer <api-key>'")
    key = key.strip()
    if key_mode(key) is None:
        raise _unauthorized("malformed API key")
    digest = hash_key(key)
    svc = services()
    found = svc.keys.get(digest)
    if found is None:
        with reading(svc.pool) as conn:
            found = store.find_api_key(conn, digest)
        if found is not None:
            svc.keys.put(digest, found)
    if found is None or not hashes_match(found.key_hash, digest):
        raise _unauthorized("unknown API key")
    if found.revoked_at is not None:
        raise _unauthorized("this API key has been revoked")
    caller = Caller(caller=found.caller, api_key_id=found.id)
    g.caller = caller
    check_rate(svc.redis, found.id, svc.settings.rate_limit_per_minute)
    return caller
