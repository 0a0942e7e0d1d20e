"""A run's items: in JSON pages, or as a JSONL or CSV download, streamed
(`shared.items` reads them)."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import RunItemsPageSchema
from api.services import services
from shared import items
from shared.requests import ListItemsSchema, load

blueprint = Blueprint("items", __name__, url_prefix="/v1")

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}

_params_schema = ListItemsSchema()
# The page but its items: those are written as they are stored, not parsed and dumped again.
_page_schema = RunItemsPageSchema(exclude=("items",))


@blueprint.get("/runs/<run_id>/items")
@documented(
    operation_id="listRunItems", summary="A run's items: pages, or a JSONL or CSV download",
    tag="runs", query=ListItemsSchema,
    description=(
        "A run has items once it has ended `COMPLETED`: its whole result, never more than it "
        "was charged for (`total` is its `resultCount`); before that, and for a run that "
        "ended otherwise, none. `format=json` (the default) answers a page of `limit` items "
        "(fewer once they pass 4 MiB) and the `cursor` of the next. `format=jsonl` and "
        "`format=csv` stream a download of every item, as an attachment: one JSON item a "
        "line, or a CSV (RFC 4180) whose header row names each field, nested ones by their "
        "dotted path (`author.name`), arrays and objects chosen by `fields` written as JSON, "
        "and an item that is not an object as `value`; without `fields`, every field in the "
        f"order it first appears, up to {items.MAX_CSV_COLUMNS} columns. `fields` picks and "
        "orders the fields of any format."),
    answer="A page of items (`format=json`), or a download (`jsonl`, `csv`), streamed.",
    content={"application/json": {"schema": RunItemsPageSchema},
             MEDIA_TYPES["jsonl"]: {"schema": {"type": "string"},
                                    "example": '{"id":"1","text":"..."}\n'},
             MEDIA_TYPES["csv"]: {"schema": {"type": "string"},
                                  "example": "id,author.name\r\n1,ada\r\n"}},
    answer_headers={"Content-Disposition": "ContentDisposition"},
    errors=(errors.VALIDATION_FAILED, errors.NOT_FOUND),
    described={400: "`limit` out of 1-1000, an unknown `format`, malformed `fields`, a cursor "
                    "that is not one of this run's items, `limit` or `cursor` with a download, "
                    "or an unknown parameter."},
    examples={400: "limit: Must be greater than or equal to 1 and less than or equal to 1000"})
def list_items(run_id: str) -> Response:
    caller = authenticate()
    params = load(_params_schema, request.args.to_dict())
    found = items.read_items(services(), caller.caller, run_id, format=params["format"],
                             limit=params["limit"], cursor=params["cursor"],
                             fields=params["field_paths"])
    if isinstance(found, items.ItemsPage):
        rest = json.dumps(_page_schema.dump(found), separators=(",", ":"))
        return Response(f'{{"items":[{",".join(found.texts)}],{rest[1:]}',
                        mimetype="application/json")
    headers = {"Content-Disposition": f'attachment; filename="{run_id}.{found.format}"',
               "Cache-Control": "no-store"}
    return Response(found.chunks, mimetype=MEDIA_TYPES[found.format], headers=headers)
