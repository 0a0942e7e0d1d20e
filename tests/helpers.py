"""Helpers the tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from psycopg_pool import ConnectionPool

from shared import keys, store
from shared.db import transaction

ROOT = Path(__file__).resolve().parent.parent


def monidctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `monidctl` as an operator would, with these variables on top of ours."""
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=60)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class KeyMaker:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def __call__(self, user: str = "user_abc123", *, test: bool = False) -> str:
        key = keys.generate_key(test=test)
        with transaction(self.pool) as conn:
            store.insert_api_key(conn, user_id=user, label=None, mode="test" if test else "live",
                                 key_prefix=keys.display_prefix(key), key_hash=keys.hash_key(key))
        return key
