"""Rate limits per API key, in Redis so that every web process shares them.

A fixed window of one minute per key: one round trip per request, a script
that counts the request and gives the window's first count its expiry. If
Redis cannot be reached the request goes through: a broker outage must not
take the API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import redis
from flask import Response, g

from api.errors import ApiError

log = logging.getLogger("monid.api")
WINDOW_SECONDS = 60
# INCR, and EXPIRE on the window's first request, atomically in one round trip.
COUNT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""
COUNT_SCRIPT_SHA = hashlib.sha1(COUNT_SCRIPT.encode()).hexdigest()


def _count(client: redis.Redis, name: str) -> int:
    try:
        return int(client.evalsha(COUNT_SCRIPT_SHA, 1, name, WINDOW_SECONDS + 5))
    except redis.exceptions.NoScriptError:  # a new or restarted Redis: EVAL caches it
        return int(client.eval(COUNT_SCRIPT, 1, name, WINDOW_SECONDS + 5))


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit),
                "RateLimit-Remaining": str(max(0, self.remaining)),
                "RateLimit-Reset": str(self.reset_seconds)}


def check_rate(client: redis.Redis, key_id: int, limit: int) -> None:
    """Count this request against the key's window; 429 RATE_LIMITED when over."""
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    name = f"monid:ratelimit:{key_id}:{window}"
    try:
        count = _count(client, name)
    except redis.RedisError as exc:
        log.warning("rate limit not checked: Redis unavailable", extra={"error": str(exc)})
        return
    quota = Quota(limit=limit, remaining=limit - count, reset_seconds=reset)
    g.quota = quota
    if count > limit:
        raise ApiError(429, "RATE_LIMITED",
                       f"over this key's limit of {limit} requests a minute; try again in "
                       f"{reset} s", headers={"Retry-After": str(reset), **quota.headers()})


def add_quota_headers(response: Response) -> Response:
    quota: Quota | None = g.get("quota")
    if quota is not None:
        for name, value in quota.headers().items():
            response.headers.setdefault(name, value)
    return response
