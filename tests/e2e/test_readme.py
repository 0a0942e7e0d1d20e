"""The README's walk-through works as written, pasted into a shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from shared.catalog import load_catalog
from shared.db import transaction
from shared.settings import DEFAULT_CATALOG_DIR
from shared.store.catalog import sync_catalog
from tests.e2e.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->",
                      readme, re.S)
    assert block, "the README has no walk-through block"
    return block.group(1)


def test_the_readme_walkthrough_discovers_runs_and_waits(stack: Stack,
                                                         pool: ConnectionPool) -> None:
    with transaction(pool) as conn:
        sync_catalog(conn, load_catalog(DEFAULT_CATALOG_DIR))  # as `monidctl migrate` does
    env = {**os.environ, **stack.env, "MONID_URL": stack.base_url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    answers: list[Any] = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    discovered, card, accepted, waited, listing, balance = answers
    assert discovered["results"][0]["endpoint"] == "/echo"
    assert card["inputSchema"]["type"] == "object" and card["provider"] == "demo"
    assert accepted["status"] == "RUNNING" and accepted["provider"] == "demo"
    assert waited["runId"] == accepted["runId"]
    assert waited["status"] == "COMPLETED"
    assert waited["output"] == {"searchTerms": ["AI"], "maxItems": 10}
    assert listing["items"][0]["runId"] == accepted["runId"]
    assert balance["balance"]["value"] >= 1
