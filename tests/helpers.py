"""Helpers the tests share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from shared import keys, store
from shared.catalog import load_catalog
from shared.db import transaction
from shared.ids import new_run_id
from shared.settings import DEFAULT_CATALOG_DIR

ROOT = Path(__file__).resolve().parent.parent
# Nothing listens on port 1: a connection there is refused at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
UNREACHABLE_DATABASE = "postgresql://postgres@127.0.0.1:1/postgres"
CATALOG = load_catalog(DEFAULT_CATALOG_DIR)


def monidctl(*args: str, env: dict[str, str], cwd: Path = ROOT,
             unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run `monidctl` as an operator would, in `cwd`, with these variables on top of ours
    and those of `unset` removed."""
    full_env = {k: v for k, v in {**os.environ, **env}.items() if k not in unset}
    return subprocess.run([sys.executable, "-m", "shared.cli", *args], cwd=cwd, text=True,
                          capture_output=True, env=full_env, timeout=120)


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


def insert_demo_run(pool: ConnectionPool, endpoint: str, input: dict[str, Any]) -> str:
    """A new run of a demo endpoint, stored as the API stores one (no message sent)."""
    run_id = new_run_id()
    found = CATALOG.find("demo", endpoint)
    assert found is not None
    with transaction(pool) as conn:
        store.insert_run(conn, run_id=run_id, caller="USER#u", api_key_id=None,
                         endpoint=found, input=input)
    return run_id


MONID_CLI = "@monid-ai/cli@0.1.7"


def monid_cli(tmp_path: Path, key: str, base_url: str) -> tuple[str, dict[str, str]]:
    """monid's own command-line client, installed from npm into `tmp_path` and given
    `key` for `base_url`: its path and the environment to run it with. Skips the test
    when npm is missing or cannot install it."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    install = subprocess.run(
        [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(tmp_path),
         MONID_CLI], capture_output=True, text=True, timeout=300,
        env={**os.environ, "HOME": str(tmp_path)})
    if install.returncode != 0:
        pytest.skip(f"npm could not install {MONID_CLI}: {install.stderr.strip()[-300:]}")
    monid = str(tmp_path / "node_modules" / ".bin" / "monid")
    env = {**os.environ, "HOME": str(tmp_path), "MONID_API_BASE_URL": base_url}
    subprocess.run([monid, "keys", "add", "--key", key, "--label", "e2e"], env=env,
                   check=True, capture_output=True, timeout=60)
    return monid, env


def insert_standing_webhook(conn: Any, caller: str, url: str) -> tuple[str, str]:
    """A standing webhook of `caller` for every run event, and its signing secret, made
    directly in the tables (as POST /v1/webhooks makes them): its ID and secret."""
    from shared.webhooks import signing

    secret = signing.new_secret()
    row = conn.execute("INSERT INTO webhook_endpoints (caller, url) VALUES (%s, %s)"
                       " RETURNING id", (caller, url)).fetchone()
    endpoint_id = row["id"] if isinstance(row, dict) else row[0]
    conn.execute("INSERT INTO webhook_secrets (caller, endpoint_id, secret) VALUES (%s, %s, %s)",
                 (caller, endpoint_id, secret))
    return endpoint_id, secret
