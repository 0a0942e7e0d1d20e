"""Runs: start one, poll one, list them."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from api import metrics
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
from shared.db import reading, transaction
from shared.ids import is_run_id, new_run_id
from shared.logs import run_id_var
from shared.money import micros_to_dollars
from shared.queue import PublishFailed, task_name
from shared.scheduling import priority_for

log = logging.getLogger("monid.api")
MAX_WAIT_SECONDS = 60
blueprint = Blueprint("runs", __name__, url_prefix="/v1")

_start_schema = StartRunSchema()
_list_schema = ListRunsSchema()


IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key) or key.endswith(" "):
        raise validation_failed({"Idempotency-Key": [
            "must be 1-255 printable ASCII characters, not starting or ending with a space"]})
    return key


def _request_hash(body: dict[str, Any]) -> bytes:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def _replay(caller: str, key: str, request_hash: bytes) -> ResponseReturnValue | None:
    """The original answer for a key the caller used in the last 24 hours."""
    with reading(services().pool) as conn:
        found = store.find_idempotency_key(conn, caller, key)
    if found is None:
        return None
    if found.request_hash != request_hash:
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED",
                       "this Idempotency-Key was used with a different request body in the last "
                       "24 hours; use a new key for a new request")
    return jsonify(found.response), 202, {"Location": f"/v1/runs/{found.run_id}",
                                          "Idempotent-Replayed": "true"}


@blueprint.post("/run")
def start_run() -> ResponseReturnValue:
    caller = authenticate()
    raw_body = parse_json_object()
    key = _idempotency_key()
    request_hash = _request_hash(raw_body) if key is not None else b""
    if key is not None:
        replayed = _replay(caller.caller, key, request_hash)
        if replayed is not None:
            return replayed
    body = load(_start_schema, raw_body)
    svc = services()
    endpoint = svc.catalog.find(body["provider"], body["endpoint"])
    if endpoint is None:
        raise ApiError(404, "ENDPOINT_NOT_FOUND",
                       svc.catalog.not_found_message(body["provider"], body["endpoint"]))
    problems = validate_input(endpoint, body["input"])
    if problems:
        raise validation_failed(problems)

    run_id = new_run_id()
    run_id_var.set(run_id)
    hold_micros, max_results = hold_for(endpoint, body["input"])
    price = price_json(endpoint.price.type, endpoint.price.amount_micros,
                       endpoint.price.flat_fee_micros)
    # Commit, then enqueue: once the row is committed the run cannot be lost. Without an
    # Idempotency-Key the accept is one statement (atomic on its own, one round trip).
    try:
        with (reading if key is None else transaction)(svc.pool) as conn:
            created_at = store.insert_run(
                conn, run_id=run_id, caller=caller.caller, api_key_id=caller.api_key_id,
                endpoint=endpoint, input=body["input"], hold_micros=hold_micros,
                max_results=max_results, in_flight_cap=svc.settings.max_runs_in_flight,
                queue_timeout_seconds=svc.settings.queue_timeout_seconds)
            answer = accepted_json(run_id, caller.caller, endpoint.provider,
                                   endpoint.provider_name, endpoint.path, price, created_at)
            if key is not None:
                store.claim_idempotency_key(conn, caller=caller.caller, key=key,
                                            request_hash=request_hash, run_id=run_id,
                                            response=answer)
    except store.TooManyRunsInFlight:
        cap = svc.settings.max_runs_in_flight
        raise ApiError(429, "RATE_LIMITED",
                       f"this caller already has {cap} runs in flight, the most it may "
                       "have; wait for some to end", headers={"Retry-After": "1"}) from None
    except store.InsufficientFunds:
        raise ApiError(402, "WALLET_INSUFFICIENT_FUNDS",
                       f"the wallet cannot cover this run: it holds "
                       f"{micros_to_dollars(hold_micros)} USD until the run ends; "
                       "add funds and try again") from None
    except store.IdempotencyKeyTaken:
        # A concurrent request with the same key won: answer what it answered.
        assert key is not None
        replayed = _replay(caller.caller, key, request_hash)
        if replayed is None:
            raise ApiError(409, "IDEMPOTENCY_KEY_REUSED",
                           "a request with this Idempotency-Key is in progress") from None
        return replayed
    # The run is stored: it is published without holding up the answer, and should
    # that fail, the sweeper publishes runs that no worker claimed. A caller with a
    # backlog gets a lower priority: it does not hold up callers with a few runs.
    svc.publisher.publish_soon(run_id, priority_for(svc.recent_starts.note(caller.caller)),
                               task_name(endpoint.provider, endpoint.path))
    metrics.note_run_accepted(endpoint.provider)
    log.info("run accepted", extra={"provider": endpoint.provider, "endpoint": endpoint.path})
    return jsonify(answer), 202, {"Location": f"/v1/runs/{run_id}"}


def _wait_seconds() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise validation_failed({"wait": [f"must be a number of seconds from 0 to "
                                          f"{MAX_WAIT_SECONDS}"]})
    return seconds


@blueprint.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    caller = authenticate()
    wait = _wait_seconds()
    not_found = ApiError(404, "NOT_FOUND", f"no run {run_id!r}")
    if not is_run_id(run_id):
        raise not_found
    svc = services()
    with reading(svc.pool) as conn:
        run = store.get_run(conn, run_id, caller.caller)
    if run is None:
        raise not_found
    if wait > 0 and not run.ended:

        def ended() -> bool:
            with reading(svc.pool) as conn:
                return store.run_status(conn, run_id, caller.caller) in store.END_STATUSES

        svc.waiter.wait(run_id, wait, ended, caller.caller)
        with reading(svc.pool) as conn:
            run = store.get_run(conn, run_id, caller.caller)
        if run is None:
            raise not_found
    return jsonify(run_json(run, full=True))


@blueprint.post("/runs/<run_id>/stop")
def stop_run(run_id: str) -> ResponseReturnValue:
    caller = authenticate()
    if not is_run_id(run_id):
        raise ApiError(404, "NOT_FOUND", f"no run {run_id!r}")
    svc = services()
    with transaction(svc.pool) as conn:
        stop = store.request_stop(conn, run_id, caller.caller)
        if stop is None:
            status = store.run_status(conn, run_id, caller.caller)
            if status is None:
                raise ApiError(404, "NOT_FOUND", f"no run {run_id!r}")
            raise ApiError(409, "RUN_NOT_STOPPABLE",
                           f"the run has already ended ({status}); only a run that has not "
                           "ended can be stopped")
        if not stop.held and not stop.following:
            # Nobody is working on it: it ends here, without ever calling the provider.
            store.end_unheld_run(conn, run_id, status="STOPPED", error=None,
                                 outcome="STOPPED", message="stopped on request")
    if stop.held or stop.following:
        # A worker carries the stop out: aborts the provider's job, or discards
        # the answer of the call in flight.
        try:
            svc.publisher.publish(run_id)
        except PublishFailed as exc:
            log.warning("publish failed; the sweeper will stop the run",
                        extra={"error": str(exc)})
    return jsonify({"runId": run_id, "status": "STOPPING",
                    "message": "the run is being stopped; it will end STOPPED and cost "
                               "nothing"}), 202


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
    with reading(services().pool) as conn:
        runs, cursor = store.list_runs(conn, caller.caller, limit=params["limit"], before=before,
                                       status=params["status"])
    return jsonify({"items": [run_json(r, full=False) for r in runs], "cursor": cursor})

