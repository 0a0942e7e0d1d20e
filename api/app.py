"""The Flask app factory."""

from __future__ import annotations

import io
import logging
import time

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from api import errors, mcp_server, metrics, openapi
from api.ratelimit import add_quota_headers
from shared.catalog import Catalog, load_catalog
from shared.ids import is_run_id, sane_request_id
from shared.logs import request_id_var, run_id_var
from shared.scheduling import concurrency_limits
from shared.services import make_services
from shared.settings import Settings

log = logging.getLogger("monid.api")
# Threads of a web process never taken by waiting requests.
WAIT_RESERVE = 8


def create_app(settings: Settings, *, catalog: Catalog | None = None) -> Flask:
    """Build the web app. The catalog is validated here: a broken one stops start-up."""
    catalog = catalog or load_catalog(settings.catalog_dir)
    concurrency_limits(settings, catalog)  # a limit naming nothing stops start-up here too
    app = Flask("monid")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]
    # Every thread but a few may wait for a run; those few serve the rest.
    app.extensions["monid"] = make_services(settings, catalog, name="monid-web",
                                            wait_slots=settings.web_threads - WAIT_RESERVE)

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = sane_request_id(request.headers.get("x-request-id"))
        # A thread serves one request after another: each starts with its own IDs, and
        # the run ID only of the run its URL names (a new run sets its own).
        run_id = (request.view_args or {}).get("run_id")
        g.log_tokens = (request_id_var.set(g.request_id),
                        run_id_var.set(run_id if isinstance(run_id, str) and is_run_id(run_id)
                                       else None))

    @app.before_request
    def _whole_body_within_the_limit() -> None:
        # A body without Content-Length (chunked) is read here, to one byte past the
        # limit: werkzeug would stop at the limit without a word, and the request
        # would go on with its body cut short.
        environ = request.environ
        if environ.get("HTTP_TRANSFER_ENCODING") and environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(settings.max_body_bytes + 1)
            if len(body) > settings.max_body_bytes:
                raise RequestEntityTooLarge()
            environ["wsgi.input"] = io.BytesIO(body)

    @app.teardown_request
    def _forget_ids(_: BaseException | None) -> None:
        tokens = g.pop("log_tokens", None)
        if tokens is not None:
            request_id_var.reset(tokens[0])
            run_id_var.reset(tokens[1])
        else:  # the request failed before it began (no before_request ran)
            request_id_var.set(None)
            run_id_var.set(None)

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or sane_request_id(None)
        response.headers["x-request-id"] = request_id
        started = g.get("started")
        if log.isEnabledFor(logging.INFO):
            log.info("request", extra={
                "method": request.method,
                "route": request.url_rule.rule if request.url_rule else None,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            })
        return add_quota_headers(response)

    errors.init_app(app)
    from api import (
        account,
        apikeys,
        controls,
        events,
        health,
        items,
        public,
        runs,
        wallet,
        webhooks,
    )
    from api import catalog as catalog_routes

    app.register_blueprint(health.blueprint)
    app.register_blueprint(catalog_routes.blueprint)
    app.register_blueprint(runs.blueprint)
    app.register_blueprint(items.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(wallet.blueprint)
    app.register_blueprint(account.blueprint)
    app.register_blueprint(apikeys.blueprint)
    app.register_blueprint(controls.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(public.blueprint)
    metrics.init_app(app)
    openapi.init_app(app)
    mcp_server.init_app(app, app.extensions["monid"])
    return app
