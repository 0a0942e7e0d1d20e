"""Publishing run IDs: the web's message template (`RunPublisher`) against kombu's
Producer used directly, in one run.

    python -m bench.publish [--messages 20000] [--repeat 5] [--batch 50]

Each repetition publishes `--messages` run IDs onto the `runs` list of Redis database 12
(flushed between) three ways, from one thread, and counts messages/s and the CPU this
process spent on each:

1. template, batched: `RunPublisher._send`, as the web's publishing thread sends what
   gathered meanwhile (`--batch` IDs per LPUSH);
2. template, one at a time: `RunPublisher.publish` (one LPUSH a message);
3. kombu: a `kombu.Producer` on the queue's own transport (`shared.broker`), publishing
   the message `send_task` would (task protocol 2 headers and body, the priority),
   without Celery's `send_task` around it; kombu's Redis channel sends one LPUSH a
   message.

Printed: the median of the repetitions with their spread, and kombu's rate as a share
of each template way. Needs REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import time
import uuid
from collections.abc import Callable

import redis
from kombu import Connection, Exchange, Producer

from bench.common import REDIS_DBS, redis_url
from shared.broker import Transport
from shared.ids import new_run_id
from shared.queue import PRIORITY_SEPARATOR, PRIORITY_STEPS, QUEUE, TASK_RUN, RunPublisher

REDIS_DB = REDIS_DBS["publish"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kombu_publisher(url: str) -> Callable[[str], None]:
    """Publish one run ID with kombu's Producer: the message Celery's send_task writes."""
    connection = Connection(url, transport=Transport, transport_options={
        "priority_steps": list(PRIORITY_STEPS), "sep": PRIORITY_SEPARATOR})
    producer = Producer(connection.default_channel, exchange=Exchange(""),
                        routing_key=QUEUE, serializer="json", auto_declare=False)
    origin = f"gen{os.getpid()}@{socket.gethostname()}"
    reply_to = str(uuid.uuid4())
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def publish(run_id: str) -> None:
        task_id = str(uuid.uuid4())
        producer.publish(
            [[run_id], {}, embed], routing_key=QUEUE, priority=0, delivery_mode=2,
            correlation_id=task_id, reply_to=reply_to,
            headers={"lang": "py", "task": TASK_RUN, "id": task_id, "shadow": None,
                     "eta": None, "expires": None, "group": None, "group_index": None,
                     "retries": 0, "timelimit": [None, None], "root_id": task_id,
                     "parent_id": None, "argsrepr": repr([run_id]), "kwargsrepr": "{}",
                     "origin": origin, "ignore_result": None,
                     "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}})

    return publish


def measure(send: Callable[[list[str]], None], ids: list[str]) -> tuple[float, float]:
    """(messages/s, CPU ms per message)."""
    cpu, started = _cpu(), time.perf_counter()
    send(ids)
    elapsed, spent = time.perf_counter() - started, _cpu() - cpu
    return len(ids) / elapsed, spent * 1000 / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    url = redis_url(REDIS_DB)
    client = redis.Redis.from_url(url)
    template = RunPublisher(client)
    via_kombu = kombu_publisher(url)

    def batched(ids: list[str]) -> None:
        for start in range(0, len(ids), args.batch):
            template._send([(run_id, 0, None) for run_id in ids[start:start + args.batch]])

    def one_by_one(ids: list[str]) -> None:
        for run_id in ids:
            template.publish(run_id)

    def kombu(ids: list[str]) -> None:
        for run_id in ids:
            via_kombu(run_id)

    ways = {"template, batched": batched, "template, one at a time": one_by_one,
            "kombu Producer": kombu}
    rates: dict[str, list[float]] = {name: [] for name in ways}
    cpus: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeat):
        for name, send in ways.items():  # alternated, so that noise hits each alike
            client.flushdb()
            ids = [new_run_id() for _ in range(args.messages)]
            rate, cpu = measure(send, ids)
            assert client.llen(QUEUE) == args.messages
            rates[name].append(rate)
            cpus[name].append(cpu)
    client.flushdb()
    for name in ways:
        print(f"{name:<26} {statistics.median(rates[name]):>9.0f} msgs/s "
              f"({min(rates[name]):.0f}-{max(rates[name]):.0f}), "
              f"{statistics.median(cpus[name]) * 1000:.1f} us CPU a message")
    kombu_rate = statistics.median(rates["kombu Producer"])
    for name in ("template, batched", "template, one at a time"):
        print(f"kombu / {name}: {kombu_rate / statistics.median(rates[name]):.2f}")


if __name__ == "__main__":
    main()
