"""Runs: start one, poll one, list them, stop one."""

from __future__ import annotations

import re

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from api import errors, metrics
from api.auth import authenticate
from api.openapi import documented
from api.schemas import (
    AcceptedRunSchema,
    BlockedRunSchema,
    RunListSchema,
    RunSchema,
    StopAnswerSchema,
    accepted_run_answer,
    parse_json_object,
)
from api.services import services
from shared import runs
from shared.errors import InvalidRequest
from shared.jsontext import dumps
from shared.requests import GetRunSchema, ListRunsSchema, StartRunSchema, load, load_start_run

blueprint = Blueprint("runs", __name__, url_prefix="/v1")

_start_schema = StartRunSchema()
_blocked_schema = BlockedRunSchema()
_get_schema = GetRunSchema()
_run_schema = RunSchema()
_list_schema = ListRunsSchema()
_run_list_schema = RunListSchema()
_stop_schema = StopAnswerSchema()

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")
IDEMPOTENCY_KEY_HEADER = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "1-255 printable ASCII characters, not starting or ending with a space. "
                   "The same key with the same body within 24 hours answers the original "
                   "`202` and starts nothing; with another body, `422`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255,
               "pattern": r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"},
}


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(key) or key.endswith(" "):
        raise InvalidRequest({"Idempotency-Key": [
            "must be 1-255 printable ASCII characters, not starting or ending with a space"]})
    return key


@blueprint.post("/run")
@documented(
    operation_id="startRun", summary="Start a run", tag="runs",
    description="Validates the input against the endpoint's input schema, holds the run's "
                "price on the wallet, stores the run and answers at once, before any provider "
                "is called. `input` is flat (the endpoint's input itself) or composite "
                "(`{\"body\", \"queryParams\", \"pathParams\"}`).",
    body=StartRunSchema, headers=(IDEMPOTENCY_KEY_HEADER,),
    body_example={"provider": "demo", "endpoint": "/echo", "input": {"message": "hello, monid"}},
    status=202, schema=AcceptedRunSchema,
    answer="Accepted: the run is stored and will reach an end state.",
    answer_headers={"Location": "Location", "Idempotent-Replayed": "IdempotentReplayed"},
    links={"GetRun": {"operationId": "getRun",
                      "parameters": {"runId": "$response.body#/runId"}},
           "StopRun": {"operationId": "stopRun",
                       "parameters": {"runId": "$response.body#/runId"}}},
    errors=(errors.INSUFFICIENT_FUNDS, errors.ENDPOINT_NOT_FOUND,
            errors.IDEMPOTENCY_KEY_IN_PROGRESS, errors.IDEMPOTENCY_KEY_REUSED),
    described={400: "Malformed JSON, a body that is not an object, an invalid "
                    "`Idempotency-Key`, an input that fails the endpoint's input schema, or "
                    "a `webhook` that is not allowed (`webhook.url`: not `https`, not a "
                    "public address; `webhook.events`: an unknown type); `errors` maps each "
                    "failing field to its messages.",
               429: f"{errors.RATE_LIMITED.meaning} Also when the caller has as many runs in "
                    "flight as it may have (`MAX_RUNS_IN_FLIGHT`)."},
    responses={"200": {
        "description": "`BLOCKED`: a spend control (a budget, a key's budget, a run cap) "
                       "refused the run. It is stored, ended at once: nothing held, no "
                       "provider called, cost 0. `controls` names each control that refused "
                       "it, `hints` how to unblock it.",
        "headers": {"x-request-id": "RequestId", "Location": "Location",
                    "Idempotent-Replayed": "IdempotentReplayed"},
        "content": {"application/json": {"schema": BlockedRunSchema}}}})
def start_run() -> ResponseReturnValue:
    caller = authenticate()
    raw_body = parse_json_object()
    key = _idempotency_key()
    body = load_start_run(_start_schema, raw_body)
    accepted = runs.start_run(services(), caller.caller, provider=body["provider"],
                              endpoint=body["endpoint"], input=body["input"],
                              api_key_id=caller.api_key_id, idempotency_key=key,
                              webhook=body.get("webhook"))
    headers = {"Location": f"/v1/runs/{accepted.run_id}"}
    if accepted.blocked:
        if accepted.replayed:
            headers["Idempotent-Replayed"] = "true"
        return jsonify(_blocked_schema.dump(accepted)), 200, headers
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        metrics.note_run_accepted(accepted.provider)
    return Response(f"{dumps(accepted_run_answer(accepted))}\n", 202, headers,
                    mimetype="application/json")


@blueprint.get("/runs/<run_id>")
@documented(
    operation_id="getRun", summary="Poll a run", tag="runs", query=GetRunSchema,
    answer="The run.", schema=RunSchema, errors=(errors.VALIDATION_FAILED, errors.NOT_FOUND),
    described={400: "`wait` is not a number of seconds in range."},
    examples={400: f"wait: must be a number of seconds from 0 to {runs.MAX_WAIT_SECONDS}"})
def get_run(run_id: str) -> Response:
    caller = authenticate()
    params = load(_get_schema, request.args.to_dict())
    run = runs.get_run(services(), caller.caller, run_id, wait=params["wait"])
    return jsonify(_run_schema.dump(run))


@blueprint.post("/runs/<run_id>/stop")
@documented(
    operation_id="stopRun", summary="Stop a run", tag="runs",
    description="The run becomes `STOPPED` (an in-flight provider run is aborted where the "
                "provider allows it) and is not charged. The request has no body.",
    status=202, answer="The run is being stopped.", schema=StopAnswerSchema,
    errors=(errors.NOT_FOUND, errors.RUN_NOT_STOPPABLE))
def stop_run(run_id: str) -> ResponseReturnValue:
    caller = authenticate()
    stopping = runs.stop_run(services(), caller.caller, run_id)
    return jsonify(_stop_schema.dump(stopping)), 202


@blueprint.get("/runs")
@documented(
    operation_id="listRuns", summary="List the caller's runs", tag="runs",
    description="Newest first, without `input`, `output` and `attempts`. Paging is stable "
                "while new runs arrive.",
    query=ListRunsSchema, answer="A page of runs.", schema=RunListSchema,
    errors=(errors.VALIDATION_FAILED,),
    described={400: "A parameter is invalid, or the cursor is not one from this API."})
def list_runs() -> Response:
    caller = authenticate()
    params = load(_list_schema, request.args.to_dict())
    page = runs.list_runs(services(), caller.caller, limit=params["limit"],
                          cursor=params["cursor"], status=params["status"])
    return jsonify(_run_list_schema.dump(page))
