"""GET /metrics: Prometheus text, the same whichever gunicorn worker process answers.

Two kinds of numbers:

- what this web tier did (runs accepted, accept latency, HTTP requests), counted
  in the process that did it. Under gunicorn every worker process writes them to
  files in `PROMETHEUS_MULTIPROC_DIR` (set by `api/gunicorn_conf.py` before the
  workers start) and a scrape adds the files up; outside gunicorn a plain
  registry of the app holds them.
- what the whole cluster did (runs ended, attempts, run durations, queue depth),
  read at scrape time from PostgreSQL and Redis by `shared.cluster_metrics`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import cast

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api.services import Services
from shared.cluster_metrics import ClusterCollector

log = logging.getLogger("monid.api")

EXTENSION = "monid_metrics"
START_RUN_RULE = "/v1/run"
# From a request answered out of a warm pool to one that waited on a slow database.
ACCEPT_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Any other method becomes "OTHER": a label value a caller can choose must not
# be able to grow the number of series without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SOURCES = ("database", "redis")

blueprint = Blueprint("metrics", __name__)


@dataclass(frozen=True)
class WebMetrics:
    """The app's metrics: what /metrics exposes, and the ones this process counts."""

    exposed: CollectorRegistry
    runs_accepted: Counter
    accept_latency: Histogram
    http_requests: Counter
    scrape_errors: Counter


def _make_metrics(services: Services) -> WebMetrics:
    # Made unregistered, then registered below in the order a scrape must read them.
    scrape_errors = Counter("monid_scrape_errors",
                            "Reads of PostgreSQL or Redis that /metrics could not make",
                            ["source"], registry=None)
    for source in SOURCES:
        scrape_errors.labels(source=source)
    runs_accepted = Counter("monid_runs_accepted", "Runs accepted by POST /v1/run",
                            ["provider"], registry=None)
    accept_latency = Histogram("monid_accept_latency_seconds",
                               "Time to handle POST /v1/run, whatever the answer",
                               buckets=ACCEPT_LATENCY_BUCKETS, registry=None)
    http_requests = Counter("monid_http_requests", "HTTP requests answered",
                            ["method", "route", "status"], registry=None)

    exposed = CollectorRegistry()
    # First, so that a scrape's failed reads are counted in that same scrape.
    exposed.register(ClusterCollector(services.pool, services.redis,
                                      cache_seconds=services.settings.metrics_cache_seconds,
                                      scrape_errors=scrape_errors))
    multiproc_dir = services.settings.metrics_multiproc_dir
    if multiproc_dir is not None and _values_in_files():
        # Every worker process writes its values to files there; add them all up.
        MultiProcessCollector(exposed, path=str(multiproc_dir))
    else:
        for metric in (scrape_errors, runs_accepted, accept_latency, http_requests):
            exposed.register(metric)
    return WebMetrics(exposed=exposed, runs_accepted=runs_accepted,
                      accept_latency=accept_latency, http_requests=http_requests,
                      scrape_errors=scrape_errors)


def _values_in_files() -> bool:
    # prometheus_client chooses where values live when it is first imported.
    if getattr(prometheus_values.ValueClass, "_multiprocess", False):
        return True
    log.warning("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                "/metrics shows this process only")
    return False


def init_app(app: Flask) -> None:
    """Add GET /metrics and the hooks that count requests. Call after the services are set."""
    if EXTENSION in app.extensions:
        return
    app.extensions[EXTENSION] = _make_metrics(cast(Services, app.extensions["monid"]))
    app.after_request(_count_request)
    app.register_blueprint(blueprint)


def note_run_accepted(provider: str) -> None:
    """Count a run that POST /v1/run accepted (not a replayed Idempotency-Key)."""
    found = current_app.extensions.get(EXTENSION)
    if found is not None:
        cast(WebMetrics, found).runs_accepted.labels(provider=provider).inc()


def _count_request(response: Response) -> Response:
    try:
        found = cast(WebMetrics, current_app.extensions[EXTENSION])
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        found.http_requests.labels(method=method, route=rule,
                                   status=str(response.status_code)).inc()
        started = g.get("started")  # set by the app's first before_request hook
        if started is not None and method == "POST" and rule == START_RUN_RULE:
            found.accept_latency.observe(time.perf_counter() - started)
    except Exception:  # counting must never cost a caller its answer
        log.exception("metrics could not count a request")
    return response


@blueprint.get("/metrics")
def metrics() -> Response:
    found = cast(WebMetrics, current_app.extensions[EXTENSION])
    return Response(generate_latest(found.exposed), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
