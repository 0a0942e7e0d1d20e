"""Bearer API keys: who is calling."""

from __future__ import annotations

from flask import g, request

from api.ratelimit import check_rate
from api.services import services
from shared.callers import Caller, authenticate_key
from shared.errors import Unauthorized

__all__ = ["Caller", "authenticate"]


def authenticate() -> Caller:
    """The caller of the request's key; 401 for a missing, malformed, unknown or revoked key."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <api-key>'")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <api-key>'")
    svc = services()
    caller = authenticate_key(svc, key.strip())
    g.caller = caller
    check_rate(svc.redis, caller.api_key_id, svc.settings.rate_limit_per_minute)
    return caller
