"""What the routes need, built once by `create_app` and kept on the app."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import cast

import redis
from flask import current_app
from psycopg_pool import ConnectionPool

from api.keycache import KeyCache
from api.waiting import RunWaiter
from shared.catalog import Catalog
from shared.queue import RunPublisher
from shared.scheduling import RecentStarts
from shared.settings import Settings
from shared.store import ApiKey


@dataclass(frozen=True)
class Services:
    settings: Settings
    catalog: Catalog
    pool: ConnectionPool
    publisher: RunPublisher
    redis: redis.Redis
    waiter: RunWaiter
    keys: KeyCache[ApiKey]
    # The runs each caller started lately in this process, for their messages' priority.
    recent_starts: RecentStarts = field(default_factory=RecentStarts)
    # Downloads read their batches from PostgreSQL this many at a time, so that they
    # never take every pooled connection, nor every core, from other requests.
    download_batches: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(1))

    def close(self) -> None:
        """Let go of connections and threads (for tests and tools that build apps)."""
        self.publisher.close(timeout=2)
        self.waiter.close()
        self.pool.close()


def services() -> Services:
    return cast(Services, current_app.extensions["monid"])
