"""The benchmarks' own arithmetic and load generator (bench/common.py, bench/load.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.common import med, percentile, ratio, spread
from bench.load import check_loopback, run_load


def test_percentile_is_the_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile(list(reversed(samples)), 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_median_spread_and_ratio() -> None:
    assert med([3.0, 1.0, 2.0]) == 2.0
    assert spread([3.0, 1.0, 2.0]) == "2.0 (1.0-3.0 over 3)"
    assert spread([]) == "n/a"
    assert ratio(1.0, 4.0) == 0.25
    assert math.isnan(ratio(1.0, 0.0))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok" if self.path == "/ok" else b"no"
        self.send_response(200 if self.path == "/ok" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_the_python_engine_counts_answers_and_errors(server: str) -> None:
    good = run_load(f"{server}/ok", connections=4, duration=0.5, tool="python")
    assert good.requests > 0 and good.errors == 0
    assert 0 < good.p50_ms <= good.p99_ms
    bad = run_load(f"{server}/missing", connections=2, duration=0.5, tool="python")
    assert bad.requests > 0 and bad.errors == bad.requests  # a 404 is not an expected answer


def test_only_loopback_targets_are_loaded() -> None:
    with pytest.raises(SystemExit, match="non-loopback"):
        check_loopback("http://192.0.2.1:8000/")
    with pytest.raises(SystemExit, match="only http"):
        check_loopback("https://127.0.0.1/")
    assert check_loopback("http://127.0.0.1:8000/healthz") == ("127.0.0.1", 8000)


def _round(p99: float, completed: float, statuses: dict[str, int] | None = None) -> dict:
    return {"accepted_per_s": 2 * completed, "completed_per_s": completed, "runs": 1000.0,
            "p99_ms": p99, "p50_ms": p99 / 4, "errors": 0,
            "statuses": statuses or {"COMPLETED": 1000},
            "cpu_ms": {"worker": 1.0, "web": 0.9, "postgres": 0.4}, "wal_per_run": 3072.0}


def test_system_summary_holds_the_tail_to_its_bar_on_the_median_round() -> None:
    from argparse import Namespace

    from bench.system import P99_TARGET_MS, summarize

    args = Namespace(workers=1, concurrency=200, connections=64, duration=20.0)
    figures = {f.figure: f for f in summarize(
        [_round(200.0, 700.0), _round(310.0, 720.0), _round(240.0, 710.0)],
        [_round(250.0, 450.0), _round(300.0, 460.0), _round(230.0, 470.0)], args).figures}
    tail = figures["accept p99 under the push (ms)"]
    assert P99_TARGET_MS == 250.0
    assert (tail.value, tail.target, tail.met) == ("240.0 (200.0-310.0 over 3)", "< 250", True)
    assert tail.baseline == "naive 250.0 (230.0-300.0 over 3)"
    assert tail.ratio == "1.03 (0.80-1.04 over 3)"  # 200/250, 310/300, 240/230, round by round
    assert figures["runs completed / s"].met is True

    failed = {"COMPLETED": 990, "FAILED": 10}
    rounds = [_round(260.0, 700.0), _round(250.0, 700.0), _round(100.0, 300.0, failed)]
    found = {f.figure: f for f in summarize(rounds, [], args).figures}
    assert found["accept p99 under the push (ms)"].met is False  # 250 is not under 250
    assert found["accept p99 under the push (ms)"].baseline == ""
    assert found["accept p99 under the push (ms)"].ratio == ""
    assert found["runs not COMPLETED"].value == "10" and found["runs not COMPLETED"].met is False

    # A naive round whose PostgreSQL took no CPU to be read still leaves a summary, and
    # the minutes of measuring before it, with no ratio for that part.
    idle = _round(230.0, 470.0)
    idle["cpu_ms"] = {**idle["cpu_ms"], "postgres": 0.0}
    found = {f.figure: f for f in summarize(
        [_round(200.0, 700.0)], [idle], args).figures}
    assert found["CPU ms a run: postgres"].ratio == "nan (nan-nan over 1)"
    assert found["CPU ms a run: web"].ratio == "1.00 (1.00-1.00 over 1)"


def test_no_benchmark_shares_a_redis_database_with_the_tests() -> None:
    """A benchmark run by a test (tests/e2e/test_bench_smoke.py) once shared database 13
    with the second test worker: that worker's Celery worker took the benchmark's run,
    found it in no database of its own and let it go, and the run waited for the
    sweeper's republish (4.5 minutes of a test of seconds)."""
    import importlib

    from bench.common import REDIS_DBS
    from tests.conftest import TEST_REDIS_DBS

    assert not set(REDIS_DBS.values()) & set(TEST_REDIS_DBS)
    assert 0 not in REDIS_DBS.values() and all(0 < db < 16 for db in REDIS_DBS.values())
    for name, db in REDIS_DBS.items():
        module = importlib.import_module(f"bench.{name}")
        used = {getattr(module, attr) for attr in ("REDIS_DB", "BENCH_REDIS_DB")
                if hasattr(module, attr)}
        assert used <= {db}, name
