"""A caller's wallet: what it holds, what is held for its runs, what is left."""

from __future__ import annotations

from shared import store
from shared.db import autocommit
from shared.services import Services
from shared.store import Wallet


def get_balance(svc: Services, caller: str) -> Wallet:
    with autocommit(svc.pool) as conn:
        return store.get_wallet(conn, caller)
