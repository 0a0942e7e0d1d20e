"""The Redis transport the queue uses: kombu's, with two changes (Celery takes it by
`broker_transport`, the supported way of choosing a transport class).

- **One redis-py client per channel.** kombu builds a new `redis.Redis` for every
  command it sends outside the consumer's BRPOP (each ack, each unacked-message
  record, each event published): the client's constructor fills a table of response
  callbacks each time, a seventh of a busy worker's CPU. A client is only a
  handle on the channel's connection pool, safe to share between threads, so the
  channel keeps one and hands it out; it goes with the pool whenever kombu drops
  the pool (after a fork, on close), and the next call builds another. (A change
  worth offering to kombu itself: `Channel.conn_or_acquire`.)
- **The record of unacknowledged messages without MULTI/EXEC.** For the visibility
  timeout kombu keeps every message a worker holds in a hash with an index of when it
  was taken, written as each message arrives and removed at its ack, each time in a
  MULTI/EXEC transaction (four commands and their answers for two). Here the two
  commands go in one round trip without it, the removal in the other order (the
  message, then its index entry), so that a connection lost between the two can only
  leave an index entry without its message, which kombu's restorer drops. Nothing
  rests on the record alone: a run is in PostgreSQL, and the sweeper publishes one
  whose message went missing.
- **Surviving the broker going away.** When Redis closes the connection while a
  worker holds unacknowledged messages, Celery closes the channel, and kombu's
  channel then tries to hand those messages back through a new connection pool
  built from a connection that is already detached (`connection.client` is None):
  an AttributeError that Celery takes for an unrecoverable error, and the worker
  exits. Here that case is the connection error it really is, which Celery
  survives: it reconnects, and the messages are handed out again by Redis after
  the visibility timeout (PostgreSQL keeps the runs either way; the sweeper
  publishes any that are due).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class QoS(kombu_redis.QoS):
    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe:
            yield pipe
            return
        with self.channel.conn_or_acquire(client) as acquired:
            yield acquired.pipeline(transaction=False)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        with self.pipe_or_acquire(pipe) as pipe:
            return pipe.hdel(self.unacked_key, delivery_tag) \
                       .zrem(self.unacked_index_key, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None:
            shared = self._shared_client = self._create_client()
        yield shared

    def _disconnect_pools(self) -> None:
        self._shared_client = None  # it belongs to the pool that goes
        super()._disconnect_pools()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel
