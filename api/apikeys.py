"""The workspace's API keys: listed (never the key itself), renamed, revoked
(`shared.apikeys` does it)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import ApiKeyListSchema, ApiKeySchema, parse_json_object
from api.services import services
from shared import apikeys
from shared.requests import ListApiKeysSchema, RenameApiKeySchema, load

blueprint = Blueprint("apikeys", __name__, url_prefix="/v1/api-keys")
_list_schema = ListApiKeysSchema()
_rename_schema = RenameApiKeySchema()
_key_schema = ApiKeySchema()
_keys_schema = ApiKeyListSchema()
_NOT_FOUND = (errors.API_KEY_NOT_FOUND,)


@blueprint.get("")
@documented(operation_id="listApiKeys", summary="The workspace's API keys", tag="account",
            description="Its live keys, oldest first: each key's label and metadata, never "
                        "the key (shown once, when it is made).",
            query=ListApiKeysSchema, answer="A page of keys.", schema=ApiKeyListSchema,
            errors=(errors.VALIDATION_FAILED,),
            described={400: "A parameter is invalid, or the cursor is not one from this API."})
def list_keys() -> Response:
    caller = authenticate()
    params = load(_list_schema, request.args.to_dict())
    page = apikeys.list_keys(services(), caller.caller, **params)
    return jsonify(_keys_schema.dump(page))


@blueprint.patch("/<label>")
@documented(operation_id="renameApiKey", summary="Rename an API key", tag="account",
            body=RenameApiKeySchema, body_example={"label": "ci-pipeline"},
            answer="The key, with its new label.", schema=ApiKeySchema, errors=_NOT_FOUND,
            described={400: "Malformed JSON, a body that is not an object, a label that is "
                            "not 1-64 of `A-Za-z0-9._:@-`, or one another live key of the "
                            "workspace has (`errors` names `label`)."})
def rename_key(label: str) -> Response:
    caller = authenticate()
    body = load(_rename_schema, parse_json_object())
    renamed = apikeys.rename_key(services(), caller.caller, label, body["label"])
    return jsonify(_key_schema.dump(renamed))


@blueprint.delete("/<label>")
@documented(operation_id="revokeApiKey", summary="Revoke an API key", tag="account",
            description="Revoked at once on the web process that answers; every other one "
                        "refuses the key within `API_KEY_CACHE_SECONDS`. Its label may then "
                        "name a new key.",
            answer="The key, now revoked.", schema=ApiKeySchema, errors=_NOT_FOUND)
def revoke_key(label: str) -> Response:
    caller = authenticate()
    revoked = apikeys.revoke_key(services(), caller.caller, label)
    return jsonify(_key_schema.dump(revoked))
