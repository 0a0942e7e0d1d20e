"""Runs: start one, poll one, list them."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from api.auth import authenticate
from api.errors import ApiError, validation_failed
from api.schemas import (
    ListRunsSchema,
    StartRunSchema,
    accepted_json,
    load,
    parse_json_object,
    price_json,
    run_json,
)
from api.services import services
from shared import store
from shared.catalog import hold_for, validate_input
from shared.db import transaction
from shared.ids import is_run_id, new_run_id
from shared.logs import run_id_var
from shared.money import micros_to_dollars
from shared.queue import PublishFailed, enqueue_run

log = logging.getLogger("monid.api")
blueprint = Blueprint("runs", __name__, url_prefix="/v1")

_start_schema = StartRunSchema()
_list_schema = ListRunsSchema()


@blueprint.post("/run")
def start_run() -> tuple[Response, int, dict[str, str]]:
    caller = authenticate()
    body = load(_start_schema, parse_json_object())
    svc = services()
    endpoint = svc.catalog.find(body["provider"], body["endpoint"])
    if endpoint is None:
        raise ApiError(404, "ENDPOINT_NOT_FOUND",
                       f"no endpoint {body['endpoint']!r} for provider {body['provider']!r}")
    problems = validate_input(endpoint, body["input"])
    if problems:
        raise validation_failed(problems)

    run_id = new_run_id()
    run_id_var.set(run_id)
    hold_micros, max_results = hold_for(endpoint, body["input"])
    # Commit, then enqueue: once the row is committed the run cannot be lost.
    try:
        with transaction(svc.pool) as conn:
            created_at = store.insert_run(conn, run_id=run_id, caller=caller.caller,
                                          api_key_id=caller.api_key_id, endpoint=endpoint,
                                          input=body["input"], hold_micros=hold_micros,
                                          max_results=max_results)
    except store.InsufficientFunds:
        raise ApiError(402, "WALLET_INSUFFICIENT_FUNDS",
                       f"the wallet cannot cover this run: it holds "
                       f"{micros_to_dollars(hold_micros)} USD until the run ends; "
                       "add funds and try again") from None
    try:
        enqueue_run(svc.publisher, run_id)
    except PublishFailed as exc:
        # The run is stored; the sweeper publishes runs that no worker claimed.
        log.warning("publish failed; the sweeper will publish the run",
                    extra={"error": str(exc)})
    price = price_json(endpoint.price.type, endpoint.price.amount_micros,
                       endpoint.price.flat_fee_micros)
    answer = accepted_json(run_id, caller.caller, endpoint.provider, endpoint.provider_name,
                           endpoint.path, price, created_at)
    log.info("run accepted", extra={"provider": endpoint.provider, "endpoint": endpoint.path})
    return jsonify(answer), 202, {"Location": f"/v1/runs/{run_id}"}


@blueprint.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    caller = authenticate()
    not_found = ApiError(404, "NOT_FOUND", f"no run {run_id!r}")
    if not is_run_id(run_id):
        raise not_found
    with transaction(services().pool) as conn:
        run = store.get_run(conn, run_id, caller.caller)
    if run is None:
        raise not_found
    return jsonify(run_json(run, full=True))


@blueprint.get("/runs")
def list_runs() -> Response:
    caller = authenticate()
    params = load(_list_schema, request.args.to_dict())
    before = None
    if params["cursor"]:
        try:
            before = store.decode_cursor(params["cursor"])
        except ValueError:
            raise validation_failed({"cursor": ["is not a cursor from this API"]}) from None
    with transaction(services().pool) as conn:
        runs, cursor = store.list_runs(conn, caller.caller, limit=params["limit"], before=before,
                                       status=params["status"])
    return jsonify({"items": [run_json(r, full=False) for r in runs], "cursor": cursor})

