"""The MCP tools: monid's names, each a thin adapter on the service layer.

A tool loads its arguments with a marshmallow schema (the REST routes' own fields,
so a bad argument gets the REST API's messages), calls the service function the
matching REST route calls, and dumps the answer with the route's answer schema.
The tools' JSON Schemas, input and output, are made from the same marshmallow
schemas, as the OpenAPI document is. Errors are the REST API's: the same
`errorCode` and message, from the one table in `api/errors.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import RAISE, Schema, fields, validate

from api.schemas import (
    AcceptedRunSchema,
    DiscoverResultsSchema,
    EndpointCardSchema,
    RunItemsPageSchema,
    RunListSchema,
    RunSchema,
    StopAnswerSchema,
    WalletBalanceSchema,
    WorkspaceListSchema,
)
from shared import accounts, items, runs, wallets
from shared.catalog import discovery
from shared.money import micros_to_dollars
from shared.requests import (
    DiscoverSchema,
    GetRunSchema,
    InspectSchema,
    ListRunsSchema,
    StartRunSchema,
    load,
)
from shared.runs import Run
from shared.services import Services

MAX_ITEMS_PAGE = items.MAX_PAGE_ITEMS
DEFAULT_ITEMS_PAGE = 20
SPENDS_MONEY = ("It spends money: it holds the endpoint's price on the wallet, and charges it "
                "once the provider delivers (a failed, stopped or timed-out run costs nothing).")


# --- inputs ---------------------------------------------------------------------------


def _workspace_id() -> fields.String:
    return fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                         metadata={"description": "The workspace to act in; a caller has one, "
                                                  "so it may be left out (and is ignored)."})


def _run_id() -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=1, max=100),
                         error_messages={"invalid": "must be a string"},
                         metadata={"description": "The run's ID (`runId`).",
                                   "example": "01JGXYZABCDEFGHJKMNPQRSTVW"})


def _wait(description: str) -> fields.Float:
    loaded = GetRunSchema._declared_fields["wait"]
    return fields.Float(load_default=0, validate=loaded.validate,
                        error_messages=loaded.error_messages, metadata={
                            "description": description, "minimum": 0,
                            "maximum": runs.MAX_WAIT_SECONDS})


class _Input(Schema):
    class Meta:
        unknown = RAISE

    workspaceId = _workspace_id()


class DiscoverInput(DiscoverSchema):
    workspaceId = _workspace_id()


class InspectInput(InspectSchema):
    workspaceId = _workspace_id()


class RunInput(StartRunSchema):
    workspaceId = _workspace_id()
    wait = _wait("Seconds (0 to 60) to wait for the run to end before answering: the "
                 "answer is then the run as `monid_get_run` gives it. 0 (the default) "
                 "answers at once, with the run just accepted.")


class GetRunInput(_Input):
    runId = _run_id()
    wait = _wait("Seconds (0 to 60) to wait for the run to end: the answer comes as soon "
                 "as it ends, or after `wait` seconds with the run as it then is.")


class StopRunInput(_Input):
    runId = _run_id()


class ListRunsInput(ListRunsSchema):
    workspaceId = _workspace_id()


class GetRunItemsInput(_Input):
    runId = _run_id()
    limit = fields.Integer(load_default=DEFAULT_ITEMS_PAGE, strict=True,
                           validate=validate.Range(min=1, max=MAX_ITEMS_PAGE),
                           error_messages={"invalid": "must be an integer"},
                           metadata={"description": f"Items per page (default "
                                                    f"{DEFAULT_ITEMS_PAGE}); a page holds "
                                                    "fewer once its items pass the inline "
                                                    "bound (`MCP_INLINE_OUTPUT_BYTES`)."})
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=200),
                           metadata={"description": "The previous page's `cursor`, or a run's "
                                                    "`itemsCursor`."})
    field_paths = fields.String(
        data_key="fields", load_default=None, validate=validate.Length(min=1, max=4000),
                           metadata={"description": "Comma-separated fields to keep, nested "
                                                    "ones by their dotted path (`a,b.c`).",
                                     "example": "id,author.name"})


class NoInput(_Input):
    pass


# --- outputs --------------------------------------------------------------------------


class McpRunSchema(RunSchema):
    """A run as a tool gives it: its output bounded, and where the rest is."""

    class Meta:
        fields = (*RunSchema.Meta.fields, "outputBytes", "itemsTotal", "itemsCursor")

    outputBytes = fields.Integer(allow_none=True, metadata={
        "description": "The size of the run's whole output, as compact JSON; the output is "
                       "inline while it is within `MCP_INLINE_OUTPUT_BYTES` (20 KiB)."})
    itemsTotal = fields.Integer(metadata={
        "description": "How many items the run has, when not all of them are inline."})
    itemsCursor = fields.String(allow_none=True, metadata={
        "description": "When the output is cut short: the `cursor` for `monid_get_run_items` "
                       "of the first item not inline."})


# --- JSON Schemas from the marshmallow schemas -----------------------------------------


def _json_schemas(schemas: Mapping[str, type[Schema]]) -> dict[str, dict[str, Any]]:
    """Each schema as a self-contained JSON Schema (2020-12): nested schemas in `$defs`."""
    plugin = MarshmallowPlugin()
    spec = APISpec(title="monid MCP tools", version="1", openapi_version="3.1.0",
                   plugins=[plugin])
    converter = plugin.converter
    assert converter is not None
    converted = {name: converter.schema2jsonschema(schema)
                 for name, schema in schemas.items()}
    defs = spec.to_dict().get("components", {}).get("schemas", {})

    def tidy(value: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key == "$ref" and isinstance(item, str):
                    out[key] = item.replace("#/components/schemas/", "#/$defs/")
                elif key == "example":
                    out["examples"] = [item]
                else:
                    out[key] = tidy(item)
            return out
        if isinstance(value, list):
            return [tidy(item) for item in value]
        return value

    found = {}
    for name, schema in converted.items():
        whole = tidy(schema)
        refs = json.dumps(whole)
        used = {n: tidy(d) for n, d in defs.items()}
        if "#/$defs/" in refs or any("#/$defs/" in json.dumps(d) for d in used.values()):
            whole["$defs"] = used
        found[name] = whole
    return found


# --- tools ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolAnswer:
    structured: dict[str, Any]
    text: str


@dataclass(frozen=True)
class Call:
    """What a tool is called with: the services, the caller, the loaded arguments."""

    svc: Services
    caller: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input: type[Schema]
    output: type[Schema]
    run: Callable[[Call], ToolAnswer]
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = False
    # The output schema's required fields, where they are not the output's own.
    required: tuple[str, ...] | None = None
    input_schema: dict[str, Any] = field(default_factory=dict)
    output_schema: dict[str, Any] = field(default_factory=dict)

    def load(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        return load(self.input(), dict(arguments or {}))


def _usd(value: Any) -> str:
    return f"{value} USD"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_run_schema = RunSchema()
_mcp_run_schema = McpRunSchema()


def bounded_run(svc: Services, caller: str, run: Run) -> dict[str, Any]:
    """A run as `monid_get_run` answers it: its output inline while within the MCP bound;
    past it, the first of its items that fit (when the output is a list of them, else
    none), `outputTruncated`, and the cursor of the first item left out."""
    dumped: dict[str, Any] = _run_schema.dump(run)
    output = dumped["output"]
    size = len(_compact(output).encode()) if output is not None else None
    dumped["outputBytes"] = size
    bound = svc.settings.mcp_inline_output_bytes
    if size is None or (size <= bound and not dumped["outputTruncated"]):
        return dumped
    kept: list[Any] = []
    if isinstance(output, list):
        used = 2
        for item in output:
            used += len(_compact(item).encode()) + 1
            if used > bound:
                break
            kept.append(item)
    if size > bound or dumped["outputTruncated"]:
        page = items.read_items(svc, caller, run.id, limit=1, page_bytes=1)
        assert isinstance(page, items.ItemsPage)
        dumped["itemsTotal"] = page.total
        start = len(kept) if isinstance(output, list) else 0
        dumped["itemsCursor"] = (items.items_cursor(run.id, start)
                                 if start < page.total else None)
        dumped["output"] = kept if isinstance(output, list) else None
        dumped["outputTruncated"] = True
    return dumped


def _run_text(run: Mapping[str, Any]) -> str:
    line = f"run {run['runId']} ({run['provider']} {run['endpoint']}): {run['status']}"
    if run.get("cost"):
        line += f", cost {_usd(run['cost']['value'])}"
    if run.get("resultCount") is not None:
        line += f", {run['resultCount']} result(s)"
    if run.get("error"):
        line += f"; error {run['error'].get('code')}: {run['error'].get('message')}"
    if run.get("outputTruncated"):
        line += (f"; output cut to {len(run['output'] or [])} inline item(s) of "
                 f"{run.get('itemsTotal')}: read the rest with monid_get_run_items")
    elif run.get("status") in ("RUNNING", "STOPPING"):
        line += "; call monid_get_run with wait to get its result"
    return line


def _answer(structured: dict[str, Any], summary: str) -> ToolAnswer:
    return ToolAnswer(structured, f"{summary}\n{_compact(structured)}")


def _discover(call: Call) -> ToolAnswer:
    found = discovery.discover(call.svc, call.args["query"], limit=call.args["limit"])
    dumped = DiscoverResultsSchema().dump(found)
    names = ", ".join(f"{r['provider']} {r['endpoint']}" for r in dumped["results"])
    return _answer(dumped, f"{dumped['count']} endpoint(s) for {found.query!r}: {names}")


def _inspect(call: Call) -> ToolAnswer:
    entry = discovery.inspect(call.svc, call.args["provider"], call.args["endpoint"])
    dumped = EndpointCardSchema().dump(entry)
    price = dumped["price"]
    return _answer(dumped, f"{dumped['provider']} {dumped['endpoint']}: {dumped['name']}, "
                           f"{price['type']} {_usd(price['amount'])}")


def _run(call: Call) -> ToolAnswer:
    a = call.args
    accepted = runs.start_run(call.svc, call.caller, provider=a["provider"],
                              endpoint=a["endpoint"], input=a["input"],
                              webhook=a.get("webhook"))
    if a["wait"] > 0:
        run = runs.get_run(call.svc, call.caller, accepted.run_id, wait=a["wait"])
        dumped = bounded_run(call.svc, call.caller, run)
        return _answer(dumped, _run_text(dumped))
    started: dict[str, Any] = AcceptedRunSchema().dump(accepted)
    return _answer(started, _run_text(started))


def _get_run(call: Call) -> ToolAnswer:
    run = runs.get_run(call.svc, call.caller, call.args["runId"], wait=call.args["wait"])
    dumped = bounded_run(call.svc, call.caller, run)
    return _answer(dumped, _run_text(dumped))


def _get_run_items(call: Call) -> ToolAnswer:
    a = call.args
    page = items.read_items(call.svc, call.caller, a["runId"], limit=a["limit"],
                            cursor=a["cursor"], fields=a["field_paths"],
                            page_bytes=call.svc.settings.mcp_inline_output_bytes)
    assert isinstance(page, items.ItemsPage)
    dumped = {"items": [json.loads(text) for text in page.texts], "cursor": page.cursor,
              "total": page.total}
    more = "; more with this cursor" if page.cursor else ""
    return _answer(dumped, f"{len(page.texts)} item(s) of {page.total}{more}")


def _stop_run(call: Call) -> ToolAnswer:
    stopping = runs.stop_run(call.svc, call.caller, call.args["runId"])
    dumped = StopAnswerSchema().dump(stopping)
    return _answer(dumped, f"run {stopping.run_id}: STOPPING")


def _list_runs(call: Call) -> ToolAnswer:
    a = call.args
    page = runs.list_runs(call.svc, call.caller, limit=a["limit"], cursor=a["cursor"],
                          status=a["status"])
    dumped = RunListSchema().dump(page)
    more = "; more with this cursor" if page.cursor else ""
    return _answer(dumped, f"{len(page.items)} run(s){more}")


def _balance(call: Call) -> ToolAnswer:
    wallet = wallets.get_balance(call.svc, call.caller)
    dumped = WalletBalanceSchema().dump(wallet)
    return _answer(dumped, f"available {_usd(micros_to_dollars(wallet.available_micros))} "
                           f"(balance {_usd(micros_to_dollars(wallet.balance_micros))}, held "
                           f"{_usd(micros_to_dollars(wallet.held_micros))})")


def _list_workspaces(call: Call) -> ToolAnswer:
    found = accounts.list_workspaces(call.svc, call.caller)
    dumped = WorkspaceListSchema().dump({"workspaces": found})
    names = ", ".join(f"{w.slug} ({w.workspace_id})" for w in found)
    return _answer(dumped, f"{len(found)} workspace(s): {names}")


_accepted_required = tuple(
    name for name, f in AcceptedRunSchema._declared_fields.items() if f.required)

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("monid_discover", "Find data endpoints",
             "Find the provider endpoints that best match what you need, in words (e.g. "
             "'twitter posts about a topic'), best first, with their price.",
             DiscoverInput, DiscoverResultsSchema, _discover),
    ToolSpec("monid_inspect", "Inspect an endpoint",
             "An endpoint's whole card: its input JSON Schema, an example input, its price "
             "and deadline. Read it before monid_run.",
             InspectInput, EndpointCardSchema, _inspect),
    ToolSpec("monid_run", "Run an endpoint",
             "Start a run of a provider's endpoint with an input, flat (the endpoint's input "
             "itself) or composite ({body, queryParams, pathParams}). It answers at once with "
             "the run's ID, or, with `wait`, once the run has ended (at most 60 s). "
             + SPENDS_MONEY, RunInput, McpRunSchema, _run, read_only=False, idempotent=False,
             open_world=True, required=_accepted_required),
    ToolSpec("monid_get_run", "Get a run",
             "A run: its status, output, cost and error. With `wait` (0-60 s), as soon as it "
             "ends. A big output is cut to its first items (20 KiB inline by default): "
             "`itemsTotal` says how many there are and `itemsCursor` where "
             "monid_get_run_items goes on.", GetRunInput, McpRunSchema, _get_run),
    ToolSpec("monid_get_run_items", "Page through a run's items",
             "A page of a completed run's items, `limit` at a time from `cursor`, bounded in "
             "size; `fields` keeps only some fields of each item. Use it for results too big "
             "to read at once.", GetRunItemsInput, RunItemsPageSchema, _get_run_items),
    ToolSpec("monid_stop_run", "Stop a run",
             "Stop a run that has not ended: it ends STOPPED and costs nothing.",
             StopRunInput, StopAnswerSchema, _stop_run, read_only=False, destructive=True),
    ToolSpec("monid_list_runs", "List runs",
             "The caller's runs, newest first, without their input and output; `status` "
             "filters, `cursor` pages on.", ListRunsInput, RunListSchema, _list_runs),
    ToolSpec("monid_balance", "Wallet balance",
             "The wallet: its balance, what is held for runs not yet ended, and what is "
             "available for new runs, in USD.", NoInput, WalletBalanceSchema, _balance),
    ToolSpec("monid_list_workspaces", "List workspaces",
             "The workspaces this key may act in (one: its user's account).",
             NoInput, WorkspaceListSchema, _list_workspaces),
)


def _with_schemas() -> dict[str, ToolSpec]:
    inputs = _json_schemas({t.name: t.input for t in TOOLS})
    outputs = _json_schemas({t.name: t.output for t in TOOLS})
    made = {}
    for tool in TOOLS:
        output = outputs[tool.name]
        if tool.required is not None:
            output["required"] = list(tool.required)
        made[tool.name] = replace(tool, input_schema=inputs[tool.name], output_schema=output)
    return made


BY_NAME = _with_schemas()
