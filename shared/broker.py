"""The Redis transport the queue uses: kombu's, made to survive the broker going away.

When Redis closes the connection while a worker holds unacknowledged messages,
Celery closes the channel, and kombu's channel then tries to hand those messages
back through a new connection pool built from a connection that is already
detached (`connection.client` is None): an AttributeError that Celery takes for
an unrecoverable error, and the worker exits. Here that case is the connection
error it really is, which Celery survives: it reconnects, and the messages are
handed out again by Redis after the visibility timeout (PostgreSQL keeps the runs
either way; the sweeper publishes any that are due).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
