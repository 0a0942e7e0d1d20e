"""Wallets and their ledger: credits here; holds and charges are written with the runs
they belong to (`insert_run`, and `monid_settle` when a run ends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.db import Conn, query


@dataclass(frozen=True)
class Wallet:
    caller: str
    balance_micros: int
    held_micros: int

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    caller: str
    run_id: str | None
    kind: str
    amount_micros: int
    note: str | None
    created_at: datetime


def ensure_wallet(conn: Conn, caller: str) -> None:
    conn.execute(query("ensure_wallet"), {"caller": caller})


def get_wallet(conn: Conn, caller: str) -> Wallet:
    row = conn.execute(query("get_wallet"), {"caller": caller}).fetchone()
    return Wallet(**row) if row else Wallet(caller, 0, 0)


def credit_wallet(conn: Conn, caller: str, amount_micros: int, note: str | None = None
                  ) -> Wallet:
    if amount_micros <= 0:
        raise ValueError("a credit must be positive")
    row = conn.execute(query("credit_wallet"), {"caller": caller, "amount": amount_micros,
                                                "note": note}).fetchone()
    assert row is not None
    return Wallet(**row)


def list_ledger_entries(conn: Conn, caller: str, limit: int = 20) -> list[LedgerEntry]:
    rows = conn.execute(query("list_ledger_entries"), {"caller": caller, "limit": limit})
    return [LedgerEntry(**r) for r in rows]
