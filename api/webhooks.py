"""Webhooks: a workspace's standing webhooks, the secrets that sign deliveries, and the
delivery log (`shared.webhooks.service` does it)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from api import errors
from api.auth import authenticate
from api.openapi import documented
from api.schemas import (
    CreatedWebhookSchema,
    DeliveryListSchema,
    DeliverySchema,
    RotatedSecretSchema,
    SigningSecretSchema,
    WebhookListSchema,
    WebhookSchema,
    parse_json_object,
)
from api.services import services
from shared.requests import (
    CreateWebhookSchema,
    ListDeliveriesSchema,
    ListWebhooksSchema,
    UpdateWebhookSchema,
    load,
)
from shared.webhooks import service as webhooks

blueprint = Blueprint("webhooks", __name__, url_prefix="/v1")

_create_schema = CreateWebhookSchema()
_update_schema = UpdateWebhookSchema()
_list_schema = ListWebhooksSchema()
_deliveries_query = ListDeliveriesSchema()
_created_schema = CreatedWebhookSchema()
_webhook_schema = WebhookSchema()
_webhooks_schema = WebhookListSchema()
_secret_schema = SigningSecretSchema()
_rotated_schema = RotatedSecretSchema()
_delivery_schema = DeliverySchema()
_deliveries_schema = DeliveryListSchema()

_NOT_FOUND = (errors.WEBHOOK_NOT_FOUND,)
_PAGE_400 = {400: "A parameter is invalid, or the cursor is not one from this API."}
_URL_RULES = ("`url` not `https`, not on a public address, malformed or over 2048 "
              "characters; `events` empty or naming an unknown type")
_ROTATION = ("The old secret goes on signing beside the new one for "
             "`WEBHOOK_SECRET_GRACE_SECONDS` (a day by default): deliveries meanwhile carry "
             "both signatures, space-separated, so a receiver that knows either accepts "
             "them. The request has no body.")


@blueprint.post("/webhooks")
@documented(operation_id="createWebhook", summary="Make a standing webhook", tag="webhooks",
            description="Every end of the workspace's runs that it wants is delivered to it, "
                        "signed with its own secret, answered here once and never again. A "
                        "workspace has at most `MAX_WEBHOOKS_PER_WORKSPACE` (20).",
            body=CreateWebhookSchema,
            body_example={"url": "https://example.com/hooks/monid",
                          "events": ["run.completed", "run.failed"],
                          "description": "order pipeline"},
            status=201, schema=CreatedWebhookSchema,
            answer="The webhook, with its signing secret (shown this once).",
            errors=(errors.WEBHOOK_LIMIT_REACHED,),
            described={400: f"A field is invalid (`errors` names it): {_URL_RULES}; an unknown "
                            "field; a value of the wrong type."})
def create_webhook() -> ResponseReturnValue:
    caller = authenticate()
    body = load(_create_schema, parse_json_object())
    created = webhooks.create_webhook(services(), caller.caller, **body)
    return jsonify(_created_schema.dump(created)), 201


@blueprint.get("/webhooks")
@documented(operation_id="listWebhooks", summary="The workspace's webhooks", tag="webhooks",
            description="Newest first, without their secrets.", query=ListWebhooksSchema,
            answer="A page of webhooks.", schema=WebhookListSchema,
            errors=(errors.VALIDATION_FAILED,), described=_PAGE_400)
def list_webhooks() -> Response:
    caller = authenticate()
    params = load(_list_schema, request.args.to_dict())
    page = webhooks.list_webhooks(services(), caller.caller, **params)
    return jsonify(_webhooks_schema.dump(page))


@blueprint.get("/webhooks/default/secret")
@documented(operation_id="getDefaultWebhookSecret", summary="The workspace's default secret",
            tag="webhooks",
            description="It signs the deliveries of runs' own webhooks (`webhook` of "
                        "`POST /v1/run`); made on first use.",
            answer="The secret.", schema=SigningSecretSchema)
def get_default_secret() -> Response:
    caller = authenticate()
    return jsonify(_secret_schema.dump({"key": webhooks.default_secret(services(),
                                                                       caller.caller)}))


@blueprint.post("/webhooks/default/secret/rotate")
@documented(operation_id="rotateDefaultWebhookSecret",
            summary="Rotate the workspace's default secret", tag="webhooks",
            description=_ROTATION, answer="The new secret.", schema=RotatedSecretSchema)
def rotate_default_secret() -> Response:
    caller = authenticate()
    return jsonify(_rotated_schema.dump(webhooks.rotate_default_secret(services(),
                                                                       caller.caller)))


@blueprint.get("/webhooks/<webhook_id>")
@documented(operation_id="getWebhook", summary="A webhook", tag="webhooks",
            answer="The webhook, without its secret.", schema=WebhookSchema,
            errors=_NOT_FOUND)
def get_webhook(webhook_id: str) -> Response:
    caller = authenticate()
    return jsonify(_webhook_schema.dump(webhooks.get_webhook(services(), caller.caller,
                                                             webhook_id)))


@blueprint.patch("/webhooks/<webhook_id>")
@documented(operation_id="updateWebhook", summary="Change a webhook", tag="webhooks",
            description="Only the fields sent change. `enabled: true` switches it on again "
                        "(and forgets why it was switched off). Deliveries already made keep "
                        "the URL they were made with.",
            body=UpdateWebhookSchema, body_example={"enabled": True},
            answer="The webhook as changed.", schema=WebhookSchema, errors=_NOT_FOUND,
            described={400: f"A field is invalid (`errors` names it): {_URL_RULES}; an unknown "
                            "field; a value of the wrong type; or no field at all."})
def update_webhook(webhook_id: str) -> Response:
    caller = authenticate()
    body = load(_update_schema, parse_json_object())
    changed = webhooks.update_webhook(services(), caller.caller, webhook_id, body)
    return jsonify(_webhook_schema.dump(changed))


@blueprint.delete("/webhooks/<webhook_id>")
@documented(operation_id="deleteWebhook", summary="Delete a webhook", tag="webhooks",
            description="With its secrets and its deliveries: those not yet sent are not "
                        "sent.",
            answer="The webhook, now deleted.", schema=WebhookSchema, errors=_NOT_FOUND)
def delete_webhook(webhook_id: str) -> Response:
    caller = authenticate()
    return jsonify(_webhook_schema.dump(webhooks.delete_webhook(services(), caller.caller,
                                                                webhook_id)))


@blueprint.post("/webhooks/<webhook_id>/test")
@documented(operation_id="testWebhook", summary="Send a test event to a webhook",
            tag="webhooks",
            description="A `webhook.test` event (its `data`: the webhook's ID, a message and "
                        "a sample run summary) is delivered to the webhook, enabled or not, "
                        "signed and retried as any other. The request has no body.",
            status=202, answer="The delivery, PENDING: follow it in the webhook's deliveries.",
            schema=DeliverySchema, errors=_NOT_FOUND)
def test_webhook(webhook_id: str) -> ResponseReturnValue:
    caller = authenticate()
    made = webhooks.test_webhook(services(), caller.caller, webhook_id)
    return jsonify(_delivery_schema.dump(made)), 202


@blueprint.post("/webhooks/<webhook_id>/secret/rotate")
@documented(operation_id="rotateWebhookSecret", summary="Rotate a webhook's secret",
            tag="webhooks", description=_ROTATION, answer="The new secret.",
            schema=RotatedSecretSchema, errors=_NOT_FOUND)
def rotate_webhook_secret(webhook_id: str) -> Response:
    caller = authenticate()
    return jsonify(_rotated_schema.dump(webhooks.rotate_webhook_secret(
        services(), caller.caller, webhook_id)))


@blueprint.get("/webhooks/<webhook_id>/deliveries")
@documented(operation_id="listWebhookDeliveries", summary="The deliveries to a webhook",
            tag="webhooks", description="Newest first, each with its tries.",
            query=ListDeliveriesSchema, answer="A page of deliveries.",
            schema=DeliveryListSchema, errors=(errors.VALIDATION_FAILED, *_NOT_FOUND),
            described=_PAGE_400)
def list_webhook_deliveries(webhook_id: str) -> Response:
    caller = authenticate()
    params = load(_deliveries_query, request.args.to_dict())
    page = webhooks.list_webhook_deliveries(services(), caller.caller, webhook_id, **params)
    return jsonify(_deliveries_schema.dump(page))


@blueprint.get("/runs/<run_id>/deliveries")
@documented(operation_id="listRunDeliveries", summary="The deliveries of a run's end",
            tag="webhooks",
            description="To the run's own webhook (`webhookId` null) and to the workspace's "
                        "standing webhooks; newest first, each with its tries.",
            query=ListDeliveriesSchema, answer="A page of deliveries.",
            schema=DeliveryListSchema, errors=(errors.VALIDATION_FAILED, errors.NOT_FOUND),
            described=_PAGE_400)
def list_run_deliveries(run_id: str) -> Response:
    caller = authenticate()
    params = load(_deliveries_query, request.args.to_dict())
    page = webhooks.list_run_deliveries(services(), caller.caller, run_id, **params)
    return jsonify(_deliveries_schema.dump(page))


@blueprint.post("/deliveries/<delivery_id>/redeliver")
@documented(operation_id="redeliverDelivery", summary="Send a delivery again",
            tag="webhooks",
            description="A `DELIVERED` or `FAILED` delivery becomes `PENDING`, due now, and "
                        "is sent again: the same event, so the same `webhook-id` (a receiver "
                        "that drops duplicates drops it). The request has no body.",
            status=202, answer="The delivery, PENDING again.", schema=DeliverySchema,
            errors=(errors.DELIVERY_NOT_FOUND, errors.DELIVERY_PENDING))
def redeliver(delivery_id: str) -> ResponseReturnValue:
    caller = authenticate()
    return jsonify(_delivery_schema.dump(webhooks.redeliver(services(), caller.caller,
                                                            delivery_id))), 202
