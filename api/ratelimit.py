"""Rate limits per API key (and, on the public catalog, per client address), in Redis
so that every web process shares them.

A fixed window of one minute per key, aligned to the clock, counted by the
`limits` library on the web's Redis: its Redis storage and its per-minute item,
whose `incr` is one round trip (a script that counts the request and gives the
window's first count its expiry) and answers the count, from which the headers
are made. (`FixedWindowRateLimiter.hit` would answer only yes or no, and its
`get_window_stats` costs two more round trips a request, for the same headers.)
If Redis cannot be reached the request goes through: a broker outage must not
take the API down with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from flask import Response, current_app, g
from limits import RateLimitItemPerMinute
from limits.storage import RedisStorage

from api.errors import ApiError

log = logging.getLogger("monid.api")
EXTENSION = "monid_ratelimit"
KEY_PREFIX = "monid:ratelimit"
WINDOW_SECONDS = 60
# A window's count outlives the window a little: a late request still finds it.
EXPIRY_SLACK_SECONDS = 5


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit),
                "RateLimit-Remaining": str(max(0, self.remaining)),
                "RateLimit-Reset": str(self.reset_seconds)}


def _storage(client: redis.Redis) -> RedisStorage:
    """The app's rate-limit storage, on the connection pool of its Redis client."""
    storage: RedisStorage | None = current_app.extensions.get(EXTENSION)
    if storage is None:
        storage = current_app.extensions.setdefault(EXTENSION, RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix=KEY_PREFIX))
    return storage


def check_rate(client: redis.Redis, key_id: int | str, limit: int, *, who: str = "key") -> None:
    """Count this request against the window of `key_id` (an API key's ID, or a name
    such as `addr:<address>`); 429 RATE_LIMITED when over. `who` names it to the caller."""
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    item = RateLimitItemPerMinute(limit)
    try:
        count = _storage(client).incr(item.key_for(str(key_id), str(window)),
                                      item.get_expiry() + EXPIRY_SLACK_SECONDS)
    except redis.RedisError as exc:
        log.warning("rate limit not checked: Redis unavailable", extra={"error": str(exc)})
        return
    quota = Quota(limit=limit, remaining=limit - count, reset_seconds=reset)
    g.quota = quota
    if count > item.amount:
        raise ApiError(429, "RATE_LIMITED",
                       f"over this {who}'s limit of {limit} requests a minute; try again in "
                       f"{reset} s", headers={"Retry-After": str(reset), **quota.headers()})


def add_quota_headers(response: Response) -> Response:
    quota: Quota | None = g.get("quota")
    if quota is not None:
        for name, value in quota.headers().items():
            response.headers.setdefault(name, value)
    return response
