"""The caller's wallet."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from api.auth import authenticate
from api.openapi import documented
from api.schemas import WalletBalanceSchema
from api.services import services
from shared import wallets

blueprint = Blueprint("wallet", __name__, url_prefix="/v1/wallet")
_balance_schema = WalletBalanceSchema()


@blueprint.get("/balance")
@documented(operation_id="getWalletBalance", summary="The caller's wallet", tag="wallet",
            answer="The wallet's balance, what is held for runs that have not ended, and what "
                   "is available.", schema=WalletBalanceSchema)
def balance() -> Response:
    caller = authenticate()
    return jsonify(_balance_schema.dump(wallets.get_balance(services(), caller.caller)))
