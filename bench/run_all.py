"""Every benchmark, one after the other, and a summary table of what they found.

    python -m bench.run_all [--quick] [--only NAME ...] [--skip NAME ...] [--profile DIR]
        [--tool auto|wrk|python]

Each benchmark runs as its own process (`python -m bench.<name>`, output passed through),
so that one failing or leaving something behind does not spoil the others; the new ones
hand their figures over with --json, the older accept_latency and inflight are read from
what they print. --quick passes --quick (or small counts) to each: a smoke test of a few
minutes. Needs DATABASE_URL (an admin URL) and REDIS_URL, as each benchmark does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT, Figure, install_cleanup, machine_line, print_table, versions


@dataclass
class Bench:
    name: str
    full: list[str]
    quick: list[str]
    reads_json: bool = True
    env: dict[str, str] = field(default_factory=dict)


# accept_latency predates the rate limit (1200 requests a minute per key) and the cap on
# runs in flight (1000 per caller): its 3 x 1000 runs (and no worker) would get 429s. Its
# web inherits this environment, which lifts both, as bench.accept does.
UNLIMITED = {"RATE_LIMIT_PER_MINUTE": "10000000", "MAX_RUNS_IN_FLIGHT": "0"}


BENCHES = [
    Bench("load", ["--self-test", "--duration", "5"], ["--self-test", "--quick"], False),
    Bench("accept", [], ["--quick"]),
    Bench("throughput", [], ["--quick"]),
    Bench("polling", [], ["--quick"]),
    Bench("accept_latency", ["--requests", "1000", "--repeat", "3"],
          ["--requests", "200", "--repeat", "2"], False, UNLIMITED),
    Bench("inflight", ["--runs", "1000", "--concurrency", "500", "--apify", "500"],
          ["--runs", "200", "--concurrency", "100", "--apify", "50"], False),
    Bench("system", ["--repeat", "2"], ["--duration", "5"]),
    Bench("fairness", [], ["--flood", "300", "--sleep", "0.5", "--probes", "10"]),
    Bench("results", [], ["--quick"]),
    Bench("webhooks", [], ["--quick"]),
]


def _num(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def figures_from_output(name: str, out: str, quick: bool) -> list[Figure]:
    """Figures of the benchmarks that only print."""
    figures = []
    if name == "load":
        for tool, rps in re.findall(r"trivial server, (\w+)\s*:\s*([\d.]+) req/s", out):
            figures.append(Figure(f"generator ceiling ({tool}), trivial 1-core server",
                                  f"{float(rps):.0f} req/s"))
    elif name == "accept_latency":
        a50 = _num(r"POST /v1/run\s+p50 ([\d.]+) ms", out)
        a99 = _num(r"POST /v1/run .*p99 ([\d.]+) ms", out)
        h50 = _num(r"GET /healthz\s+p50 ([\d.]+) ms", out)
        r = _num(r"ratio accept/healthz p50: ([\d.]+)x", out)
        figures.append(Figure("POST /v1/run p50 ms, one client", f"{a50}",
                              baseline=f"/healthz {h50}", ratio=f"{r}"))
        figures.append(Figure("POST /v1/run p99 ms, one client", f"{a99}"))
    elif name == "inflight":
        peak = _num(r"runs in flight at once \(peak\): (\d+)", out)
        rps = _num(r"runs/s: ([\d.]+)", out)
        ceiling = re.search(r"ceiling concurrency/delay = ([\d.]+); ratio ([\d.]+)", out)
        rss = re.search(r"worker RSS: idle (\d+) MB, peak (\d+) MB", out)
        apify = re.search(r"actor runs followed at once \(peak\): (\d+); worker slots busy "
                          r"at once \(peak\): (\d+)", out)
        apify_rss = _num(r"worker peak RSS (\d+) MB", out)
        slots = _num(r"one worker process with (\d+) slots", out)
        target_ok = None if quick or peak is None or rss is None else \
            peak >= 500 and float(rss.group(2)) < 400
        figures.append(Figure("HTTP runs in flight at once, one worker", f"{peak:.0f}"
                              if peak is not None else "?", baseline=f"{slots:.0f} slots"
                              if slots else "", target=">= 500, < 400 MB", met=target_ok))
        if rss:
            figures.append(Figure("worker RSS idle / peak MB", f"{rss.group(1)} / "
                                  f"{rss.group(2)}", target="< 400 MB",
                                  met=None if quick else float(rss.group(2)) < 400))
        if ceiling:
            figures.append(Figure("HTTP runs/s (2 s provider)", f"{rps}",
                                  baseline=f"ceiling {ceiling.group(1)}",
                                  ratio=ceiling.group(2)))
        if apify:
            figures.append(Figure("Apify actor runs followed at once", apify.group(1),
                                  baseline=f"{apify.group(2)} worker slots busy",
                                  target=">= 500" if not quick else "",
                                  met=None if quick else int(apify.group(1)) >= 500))
        if apify_rss is not None:
            figures.append(Figure("worker peak RSS following actor runs MB",
                                  f"{apify_rss:.0f}", target="< 400 MB",
                                  met=None if quick else apify_rss < 400))
    return figures


def run_one(bench: Bench, args: argparse.Namespace, tmp: Path) -> tuple[list[Figure], str]:
    argv = [sys.executable, "-m", f"bench.{bench.name}",
            *(bench.quick if args.quick else bench.full)]
    json_path = tmp / f"{bench.name}.json"
    if bench.reads_json:
        argv += ["--json", str(json_path)]
        if bench.name in ("accept", "polling") and args.tool != "auto":
            argv += ["--tool", args.tool]
        if bench.name == "accept" and args.profile:
            argv += ["--profile", str(args.profile)]
    shown = " ".join(f"{k}={v}" for k, v in bench.env.items())
    print(f"\n######## {shown + ' ' if shown else ''}{' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env={**os.environ, **bench.env})
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    code = proc.wait()
    took = time.monotonic() - started
    status = f"exit {code}, {took:.0f} s"
    if code != 0:
        return [Figure("FAILED", status)], status
    if bench.reads_json:
        data = json.loads(json_path.read_text())
        return [Figure(**f) for f in data["figures"]], status
    return figures_from_output(bench.name, "".join(lines), args.quick), status


def main(argv: list[str] | None = None) -> int:
    names = [b.name for b in BENCHES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=names)
    parser.add_argument("--skip", nargs="+", choices=names, default=[])
    parser.add_argument("--profile", type=Path, help="py-spy the web under accept load")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args(argv)
    install_cleanup()
    chosen = [b for b in BENCHES if (not args.only or b.name in args.only)
              and b.name not in args.skip]
    print(machine_line())
    print(versions())
    started = time.monotonic()
    results: list[tuple[str, list[Figure], str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        for bench in chosen:
            figures, status = run_one(bench, args, Path(tmp))
            results.append((bench.name, figures, status))
    print(f"\n================ summary ({'quick' if args.quick else 'full'}, "
          f"{time.monotonic() - started:.0f} s in all)")
    print(machine_line())
    failed = 0
    for name, figures, status in results:
        print(f"\n{name} ({status})")
        print_table(figures)
        failed += status.startswith("exit") and not status.startswith("exit 0")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
