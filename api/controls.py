"""Spend controls: the workspace's budgets and run caps, and what they said of runs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import (
    BudgetControlListSchema,
    BudgetControlSchema,
    BudgetRunListSchema,
    RunCapControlListSchema,
    RunCapControlSchema,
    RunCapRunListSchema,
    RunControlListSchema,
    parse_json_object,
)
from api.services import services
from shared import controls
from shared.requests import ListControlsSchema, UpdateControlSchema, load

blueprint = Blueprint("controls", __name__, url_prefix="/v1")
BUDGETS = "/controls/workspace/budgets"
RUN_CAPS = "/controls/workspace/run-caps"

_list_schema = ListControlsSchema()
_update_schema = UpdateControlSchema()
_budget_schema = BudgetControlSchema()
_budget_list_schema = BudgetControlListSchema()
_budget_runs_schema = BudgetRunListSchema()
_run_cap_schema = RunCapControlSchema()
_run_cap_list_schema = RunCapControlListSchema()
_run_cap_runs_schema = RunCapRunListSchema()
_run_controls_schema = RunControlListSchema()

_NOT_FOUND = (errors.CONTROL_NOT_FOUND,)
_PAGED = (errors.VALIDATION_FAILED,)
_PAGE_400 = {400: "A parameter is invalid, or the cursor is not one from this API."}
_PATCH_400 = {400: "A field is invalid (`errors` names it: a limit that is not a whole "
                   "number, negative, or over a million dollars; an unknown unit or status), "
                   "or the body has neither `limitAmount` nor `status`."}
_PATCH_EXAMPLE = {"limitAmount": {"value": 500, "unit": "CENT", "currency": "USD"},
                  "status": "ACTIVE"}
_CHANGE = ("A change counts from the next accept on; runs already accepted keep what they "
           "hold.")


def _change() -> dict[str, Any]:
    body = load(_update_schema, parse_json_object())
    limit = body["limitAmount"]
    return {"limit_micros": None if limit is None else controls.limit_micros(limit["value"],
                                                                             limit["unit"]),
            "status": body["status"]}


def _page_args() -> dict[str, Any]:
    return load(_list_schema, request.args.to_dict())


@blueprint.get(BUDGETS)
@documented(operation_id="listBudgets", summary="The workspace's budgets", tag="controls",
            description="Newest first; each as it is in its current window. A key's own "
                        "budget is not listed here (read it by its ID).",
            query=ListControlsSchema, answer="A page of budgets.",
            schema=BudgetControlListSchema, errors=_PAGED, described=_PAGE_400)
def list_budgets() -> Response:
    caller = authenticate()
    page = controls.list_budgets(services(), caller.caller, **_page_args())
    return jsonify(_budget_list_schema.dump(page))


@blueprint.get(f"{BUDGETS}/<control_id>")
@documented(operation_id="getBudget", summary="A budget", tag="controls",
            answer="The budget, as it is in its current window.", schema=BudgetControlSchema,
            errors=_NOT_FOUND)
def get_budget(control_id: str) -> Response:
    caller = authenticate()
    return jsonify(_budget_schema.dump(controls.get_budget(services(), caller.caller,
                                                           control_id)))


@blueprint.patch(f"{BUDGETS}/<control_id>")
@documented(operation_id="updateBudget", summary="Change a budget's limit or status",
            tag="controls", description=_CHANGE, body=UpdateControlSchema,
            body_example=_PATCH_EXAMPLE, answer="The budget as changed.",
            schema=BudgetControlSchema, errors=_NOT_FOUND, described=_PATCH_400)
def update_budget(control_id: str) -> Response:
    caller = authenticate()
    changed = controls.update_budget(services(), caller.caller, control_id, **_change())
    return jsonify(_budget_schema.dump(changed))


@blueprint.get(f"{BUDGETS}/<control_id>/runs")
@documented(operation_id="listBudgetRuns", summary="What a budget said of runs",
            tag="controls", description="Newest run first: `HELD` until the run ends, then "
                                        "`SETTLED` (it cost something) or `RELEASED`; "
                                        "`BLOCKED` for a run it refused.",
            query=ListControlsSchema, answer="A page of the budget's records.",
            schema=BudgetRunListSchema, errors=(*_PAGED, *_NOT_FOUND), described=_PAGE_400)
def list_budget_runs(control_id: str) -> Response:
    caller = authenticate()
    page = controls.list_budget_runs(services(), caller.caller, control_id, **_page_args())
    return jsonify(_budget_runs_schema.dump(page))


@blueprint.get(RUN_CAPS)
@documented(operation_id="listRunCaps", summary="The workspace's run caps", tag="controls",
            query=ListControlsSchema, answer="A page of run caps, newest first.",
            schema=RunCapControlListSchema, errors=_PAGED, described=_PAGE_400)
def list_run_caps() -> Response:
    caller = authenticate()
    page = controls.list_run_caps(services(), caller.caller, **_page_args())
    return jsonify(_run_cap_list_schema.dump(page))


@blueprint.get(f"{RUN_CAPS}/<control_id>")
@documented(operation_id="getRunCap", summary="A run cap", tag="controls",
            answer="The run cap.", schema=RunCapControlSchema, errors=_NOT_FOUND)
def get_run_cap(control_id: str) -> Response:
    caller = authenticate()
    return jsonify(_run_cap_schema.dump(controls.get_run_cap(services(), caller.caller,
                                                             control_id)))


@blueprint.patch(f"{RUN_CAPS}/<control_id>")
@documented(operation_id="updateRunCap", summary="Change a run cap's limit or status",
            tag="controls", description=_CHANGE, body=UpdateControlSchema,
            body_example=_PATCH_EXAMPLE, answer="The run cap as changed.",
            schema=RunCapControlSchema, errors=_NOT_FOUND, described=_PATCH_400)
def update_run_cap(control_id: str) -> Response:
    caller = authenticate()
    changed = controls.update_run_cap(services(), caller.caller, control_id, **_change())
    return jsonify(_run_cap_schema.dump(changed))


@blueprint.get(f"{RUN_CAPS}/<control_id>/runs")
@documented(operation_id="listRunCapRuns", summary="What a run cap said of runs",
            tag="controls", description="Newest run first: `PASSED` or `BLOCKED`.",
            query=ListControlsSchema, answer="A page of the run cap's records.",
            schema=RunCapRunListSchema, errors=(*_PAGED, *_NOT_FOUND), described=_PAGE_400)
def list_run_cap_runs(control_id: str) -> Response:
    caller = authenticate()
    page = controls.list_run_cap_runs(services(), caller.caller, control_id, **_page_args())
    return jsonify(_run_cap_runs_schema.dump(page))


@blueprint.get("/runs/<run_id>/controls")
@documented(operation_id="listRunControls", summary="What the spend controls said of a run",
            tag="controls", query=ListControlsSchema,
            answer="A page of the run's records, one per control that judged it.",
            schema=RunControlListSchema, errors=(*_PAGED, errors.NOT_FOUND),
            described=_PAGE_400)
def list_run_controls(run_id: str) -> Response:
    caller = authenticate()
    page = controls.list_run_controls(services(), caller.caller, run_id, **_page_args())
    return jsonify(_run_controls_schema.dump(page))
