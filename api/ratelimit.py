"""Rate limits per API key (and, on the public catalog, per client address), in Redis
so that every web process shares them.

A fixed window of one minute per key, aligned to the clock, counted in Redis: one
script call (one round trip) grants up to `chunk` requests of the window to the web
process that asks, never past the limit (it adds to the window's count only what it
grants, and gives the window's first count its expiry), and answers the count. The
process then admits that many requests of the key counting them in memory (under a
lock, for its threads), and asks again when they are used up; while one thread asks,
the key's other requests in the process wait for its answer instead of asking too.
The fleet never admits more than the limit in a window, whatever the number of
processes: what one was granted no other can be.

The chunk grows with the limit (`chunk_for`): one request up to a limit of 1,999 a
minute (the default 1,200 included), so such limits are exact and every request is
one round trip, as before; then one request per thousand of the limit, at most 64 (a
limit of 64,000 a minute and more). The price of a chunk: what a process was granted
and has not used is no one else's, so a key may be refused up to `chunk - 1` requests
early in a window for each web process that served it (each keeps at most one chunk's
rest, less the request that asked for it): with P processes, P x 0.1% of the limit at
most, and never more than 63 P requests. Once the window is full, a process that
holds no more of it refuses the key's requests without asking Redis again until the
window ends (with chunks over one; with a chunk of one every request asks).

The headers say what the process last learned: `RateLimit-Remaining` is the limit less
the window's count at the last grant, plus what the process still holds of it (other
processes' requests since then are not seen until its next grant).

If Redis cannot be reached the request goes through: a broker outage must not take the
API down with it (requests still covered by a grant are counted and answered with the
headers; the others go through without).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Response, current_app, g

from api.errors import ApiError

log = logging.getLogger("monid.api")
EXTENSION = "monid_ratelimit"
KEY_PREFIX = "monid:ratelimit"
WINDOW_SECONDS = 60
# A window's count outlives the window a little: a late request still finds it.
EXPIRY_SLACK_SECONDS = 5
# The largest grant a process asks for, and the limit a minute per request of a grant.
MAX_CHUNK = 64
LIMIT_PER_CHUNK_STEP = 1000

# KEYS[1]: the window's count. ARGV: chunk, limit, expiry in seconds. Grants what is
# left of the limit up to the chunk, adds it to the count; answers {granted, count}.
GRANT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - count)
if grant <= 0 then
  return {0, count}
end
count = redis.call('INCRBY', KEYS[1], grant)
if count == grant then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {grant, count}
"""


def chunk_for(limit: int) -> int:
    """How many requests of a window a process asks Redis for at once, for `limit` a
    minute: 1 up to 1,999, then one per thousand, at most MAX_CHUNK."""
    return max(1, min(MAX_CHUNK, limit // LIMIT_PER_CHUNK_STEP))


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit),
                "RateLimit-Remaining": str(max(0, self.remaining)),
                "RateLimit-Reset": str(self.reset_seconds)}


@dataclass
class _Held:
    """What this process holds of one key's window."""
    left: int = 0        # granted to this process and not used yet
    count: int = 0       # the window's count in Redis at the last grant
    full: bool = False   # Redis granted nothing: the window is used up
    asking: bool = False  # a thread of this process is asking Redis for more
    asks: int = 0        # how many times this process asked
    failed: int = 0      # the last ask that failed (Redis unreachable)


class Limiter:
    """One web process's share of the fleet's windows (one per app)."""

    def __init__(self, client: redis.Redis) -> None:
        self.script: Any = client.register_script(GRANT)
        self.changed = threading.Condition(threading.Lock())
        self.held: dict[tuple[str, int, int], _Held] = {}
        self.window = 0

    def grant(self, key: str, limit: int, window: int, chunk: int) -> tuple[int, int]:
        """Ask Redis for up to `chunk` requests of the window: (granted, the count)."""
        granted, count = self.script(
            keys=[f"{KEY_PREFIX}:{key}:{limit}:{window}"],
            args=[chunk, limit, WINDOW_SECONDS + EXPIRY_SLACK_SECONDS])
        return int(granted), int(count)

    def take(self, key: str, limit: int, window: int) -> tuple[bool, int] | None:
        """Admit one request of `key` in `window` or not: (admitted, remaining). None when
        it waited for another thread's ask that could not reach Redis (it goes through);
        redis.RedisError when its own ask could not."""
        chunk = chunk_for(limit)
        if chunk == 1:
            granted, count = self.grant(key, limit, window, 1)
            return granted > 0, limit - count
        slot = (key, limit, window)
        with self.changed:
            if window > self.window:
                self._forget_before(window)
            held = self.held.get(slot)
            if held is None:
                held = self.held[slot] = _Held()
            while True:
                if held.left > 0:
                    held.left -= 1
                    return True, limit - held.count + held.left
                if held.full:
                    return False, 0
                if not held.asking:
                    break
                waited_for = held.asks
                while held.asking and held.asks == waited_for:
                    self.changed.wait()
                if held.failed == waited_for:
                    return None
            held.asking = True
            held.asks += 1
        answered = False
        try:
            granted, count = self.grant(key, limit, window, chunk)
            answered = True
        finally:
            with self.changed:
                held.asking = False
                if not answered:
                    held.failed = held.asks
                elif granted > 0:
                    held.left += granted - 1
                    held.count = count
                else:
                    held.full = True
                self.changed.notify_all()
                remaining = limit - count + held.left if answered and granted > 0 else 0
        return granted > 0, remaining

    def _forget_before(self, window: int) -> None:
        """Drop what is held of past windows (their grants are lost with them)."""
        self.window = window
        for slot in [s for s, h in self.held.items() if s[2] < window and not h.asking]:
            del self.held[slot]


def _limiter(client: redis.Redis) -> Limiter:
    """The app's limiter, on its Redis client."""
    limiter: Limiter | None = current_app.extensions.get(EXTENSION)
    if limiter is None:
        limiter = current_app.extensions.setdefault(EXTENSION, Limiter(client))
    return limiter


def check_rate(client: redis.Redis, key_id: int | str, limit: int, *, who: str = "key") -> None:
    """Count this request against the window of `key_id` (an API key's ID, or a name
    such as `addr:<address>`); 429 RATE_LIMITED when over. `who` names it to the caller."""
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    reset = max(1, int((window + 1) * WINDOW_SECONDS - now))
    try:
        taken = _limiter(client).take(str(key_id), limit, window)
    except redis.RedisError as exc:
        log.warning("rate limit not checked: Redis unavailable", extra={"error": str(exc)})
        return
    if taken is None:
        return
    admitted, remaining = taken
    quota = Quota(limit=limit, remaining=remaining, reset_seconds=reset)
    g.quota = quota
    if not admitted:
        raise ApiError(429, "RATE_LIMITED",
                       f"over this {who}'s limit of {limit} requests a minute; try again in "
                       f"{reset} s", headers={"Retry-After": str(reset), **quota.headers()})


def add_quota_headers(response: Response) -> Response:
    quota: Quota | None = g.get("quota")
    if quota is not None:
        for name, value in quota.headers().items():
            response.headers.setdefault(name, value)
    return response
