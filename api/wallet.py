"""The caller's wallet."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.auth import authenticate
from api.services import services
from shared import store
from shared.db import reading
from shared.money import micros_to_dollars

blueprint = Blueprint("wallet", __name__, url_prefix="/v1/wallet")


def _usd(micros: int) -> dict[str, object]:
    return {"value": micros_to_dollars(micros), "currency": "USD"}


@blueprint.get("/balance")
def balance() -> Response:
    caller = authenticate()
    with reading(services().pool) as conn:
        wallet = store.get_wallet(conn, caller.caller)
    return jsonify({"balance": _usd(wallet.balance_micros), "held": _usd(wallet.held_micros),
                    "available": _usd(wallet.available_micros)})
