"""`bench.accept --quick` runs end to end and reports its figures: the benchmarks are not
tests and never fail for being slow, but they must keep running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def test_the_accept_benchmark_runs_and_reports_its_ratios(admin_database_url: str,
                                                          redis_url: str,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "accept.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.accept", "--quick", "--tool", "python",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": admin_database_url, "REDIS_URL": redis_url})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(out.read_text())
    figures = {f["figure"]: f for f in report["figures"]}
    accept = figures["POST /v1/run req/s (64 conns)"]
    assert float(accept["value"].split()[0]) > 0
    assert float(accept["ratio"]) > 0  # against /healthz of the same server, same run
    assert figures["errors (accept / healthz / raw)"]["value"] == "0 / 0 / 0"


def test_the_results_benchmark_runs_and_reports_its_figures(admin_database_url: str,
                                                           redis_url: str,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.results", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DATABASE_URL": admin_database_url, "REDIS_URL": redis_url})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = {f["figure"]: f for f in json.loads(out.read_text())["figures"]}
    worker = figures["worker peak RSS, 2 x 5 MB datasets at once"]
    assert float(worker["value"].split()[0]) > 0
    assert figures["items stored meanwhile"]["baseline"] == "COMPLETED 10000: 2"
    for fmt in ("JSONL", "CSV"):
        assert float(figures[f"download rate, {fmt} of a 2 MB result"]["value"].split()[0]) > 0
        assert figures[f"web peak RSS, 3 x {fmt} download of 2 MB"]["met"] is not None


def test_the_webhooks_benchmark_runs_and_reports_its_figures(admin_database_url: str,
                                                            redis_url: str,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "webhooks.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhooks", "--quick", "--events", "100", "--runs", "5",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "DATABASE_URL": admin_database_url, "REDIS_URL": redis_url})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "100 verified" in done.stdout
    figures = {f["figure"]: f for f in json.loads(out.read_text())["figures"]}
    deliveries = figures["deliveries/s, 1 worker"]
    assert float(deliveries["value"].split()[0]) > 0
    assert float(deliveries["ratio"]) > 0  # against the no-op drain of the same run
    for q in ("p50", "p99"):
        assert float(figures[f"run end to delivery {q} (low load)"]["value"].split()[0]) > 0


def test_the_writes_benchmark_counts_every_update_of_a_run(admin_database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.writes", "--runs", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DATABASE_URL": admin_database_url})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = {line.split("  ")[1].strip(): line.split() for line in done.stdout.splitlines()
            if line.startswith("  ") and "(" in line}
    # Each step ran for every run: the claim and the end each updated all 40 rows, some
    # of them (none today) heap-only, a run a statement and 8 a statement alike.
    for step in ("claim (claim_runs)", "claim (8 a statement)", "end (deliver_runs)",
                 "end (8 a statement)"):
        updates, hot = (int(n) for n in rows[step][-2:])
        assert updates == 40 and 0 <= hot <= updates
    assert rows["accept (insert_run)"][-2:] == ["0", "0"]
