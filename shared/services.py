"""What the service layer's operations need, built once per process and passed to them.

The operations themselves are functions of the modules beside this one
(`shared.callers`, `shared.runs`, `shared.items`, `shared.wallets`,
`shared.catalog.discovery`), each taking these services first: the REST routes,
MCP tools and `monidctl` call the same ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import redis
from psycopg_pool import ConnectionPool

from shared.accepts import Accepts
from shared.catalog import Catalog
from shared.db import DatabaseUnavailable, autocommit, make_pool, ping
from shared.errors import InvalidRequest
from shared.keycache import KeyCache
from shared.keyuse import KeyUse
from shared.queue import RunPublisher, make_redis
from shared.scheduling import RecentStarts
from shared.settings import Settings
from shared.store import ApiKey
from shared.waiting import RunWaiter

T = TypeVar("T")
# Downloads read with at most this share of the database pool at once (a half).
DOWNLOAD_SHARE_OF_POOL = 2


class Publisher(Protocol):
    """Sends a run's ID to the workers (`shared.queue.RunPublisher`, or a stand-in)."""

    def publish(self, run_id: str, priority: int = 0, shadow: str | None = None) -> None: ...

    def publish_soon(self, run_id: str, priority: int = 0,
                     shadow: str | None = None) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a list, and the cursor of the next one (None on the last)."""

    items: list[T]
    cursor: str | None


def page_start(decode: Callable[[str], T], cursor: str | None) -> T | None:
    """Where the page a list's `cursor` asks for starts (None: the first page);
    InvalidRequest when the cursor is not one of this API's."""
    if not cursor:
        return None
    try:
        return decode(cursor)
    except ValueError:
        raise InvalidRequest({"cursor": ["is not a cursor from this API"]}) from None


@dataclass(frozen=True)
class Services:
    settings: Settings
    catalog: Catalog
    pool: ConnectionPool
    publisher: Publisher
    redis: redis.Redis
    waiter: RunWaiter
    keys: KeyCache[ApiKey]
    # When this process's callers last used their keys, written in batches.
    key_use: KeyUse = field(default_factory=lambda: KeyUse(60.0))
    # The runs each caller started lately in this process, for their messages' priority.
    recent_starts: RecentStarts = field(default_factory=RecentStarts)
    # Downloads read their batches from PostgreSQL this many at a time, so that they
    # never take every pooled connection, nor every core, from other requests.
    download_batches: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(1))
    # Accepts of this process's requests written together (group commit).
    accepts: Accepts = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accepts", Accepts(self.pool))

    def readiness(self) -> dict[str, bool]:
        """Whether the database and the broker answer now."""
        checks = {"database": True, "broker": True}
        try:
            with autocommit(self.pool) as conn:
                ping(conn)
        except DatabaseUnavailable:
            checks["database"] = False
        try:
            self.redis.ping()
        except Exception:  # any failure to answer means "not ready"
            checks["broker"] = False
        return checks

    def close(self) -> None:
        """Let go of connections and threads (for tests and tools that build them)."""
        self.publisher.close(timeout=2)
        self.waiter.close()
        self.pool.close()


def make_services(settings: Settings, catalog: Catalog, *, name: str,
                  wait_slots: int) -> Services:
    """Services on the settings' PostgreSQL and Redis; nothing waits for either to answer.
    `wait_slots`: how many callers may wait for runs to end at once."""
    pool = make_pool(settings.database_url, min_size=1, max_size=settings.db_pool_size,
                     name=name, timeout=settings.db_pool_timeout_seconds)
    pool.open(wait=False)
    client = make_redis(settings, socket_connect_timeout=1, socket_timeout=1)
    return Services(
        settings=settings,
        catalog=catalog,
        pool=pool,
        publisher=RunPublisher(client),
        redis=client,
        waiter=RunWaiter(settings.database_url, slots=wait_slots),
        keys=KeyCache(settings.api_key_cache_seconds),
        key_use=KeyUse(settings.api_key_last_used_flush_seconds),
        download_batches=threading.BoundedSemaphore(
            max(1, settings.db_pool_size // DOWNLOAD_SHARE_OF_POOL)),
    )
