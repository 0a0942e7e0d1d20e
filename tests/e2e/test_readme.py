"""The README's walk-through works as written, pasted into a shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough:start -->\n```bash\n(.*?)```\n<!-- walkthrough:end -->",
                      readme, re.S)
    assert block, "the README has no walk-through block"
    return block.group(1)


def test_the_readme_walkthrough_runs_a_run_to_completed(stack: Stack) -> None:
    env = {**os.environ, **stack.env, "MONID_URL": stack.base_url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    accepted = json.loads(lines[0])
    assert accepted["status"] == "RUNNING" and accepted["provider"] == "demo"
    run = json.loads(lines[-2])
    assert run["runId"] == accepted["runId"]
    assert run["status"] == "COMPLETED"
    assert run["output"] == {"searchTerms": ["AI"], "maxItems": 10}
    listing = json.loads(lines[-1])
    assert listing["items"][0]["runId"] == accepted["runId"]
