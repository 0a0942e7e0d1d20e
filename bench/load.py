"""A closed-loop HTTP load generator for loopback servers: N keep-alive connections, each
sending its next request as soon as the answer to the last one is read, for a fixed time.

    python -m bench.load URL [--method POST] [--body JSON] [-H 'Name: value']...
        [--connections 64] [--duration 10] [--expect 202] [--tool auto|wrk|python]
    python -m bench.load [--self-test] [--quick]   # no URL: the engines' own ceiling

Two engines, the same answer (`LoadResult`: requests/s, p50, p99, errors):

- `wrk` (used when it is on PATH, `--tool auto`): C, epoll, one thread by default so
  that it leaves the other core to the server; a generated Lua script sets the method,
  body and headers (or picks a random path from a file per request) and prints the
  count, the latency percentiles and the errors as one JSON line. wrk counts an answer
  as an error when its status is 400 or more (and connect/read/write errors, timeouts).
- `python`: asyncio with raw `asyncio.open_connection` streams, HTTP/1.1 keep-alive, the
  request bytes written by hand, the answer read by status line, headers and
  Content-Length (or chunks). An error is any status not in `expect`, or an exception
  (the connection is then opened again).

Both count only the requests answered within the duration, and record the latency of
every answered request (errors included, as wrk does). Loopback targets only; bounded
by `--duration` (at most 600 s), `--connections` (at most 1024) and, for the python
engine, `--max-requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_DURATION = 600.0
MAX_CONNECTIONS = 1024


@dataclass
class LoadResult:
    tool: str
    connections: int
    duration: float  # seconds measured
    requests: int  # answered within the duration (errors included)
    errors: int
    p50_ms: float
    p99_ms: float
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def ok_rps(self) -> float:
        return (self.requests - min(self.errors, self.requests)) / self.duration \
            if self.duration else 0.0

    def line(self) -> str:
        kinds = f" {self.error_kinds}" if self.errors else ""
        return (f"{self.rps:8.1f} req/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  "
                f"errors {self.errors}{kinds}  ({self.requests} in {self.duration:.1f} s, "
                f"{self.connections} conns, {self.tool})")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def pick_tool(tool: str) -> str:
    if tool == "auto":
        return "wrk" if wrk_available() else "python"
    if tool == "wrk" and not wrk_available():
        raise SystemExit("wrk is not on PATH (apt-get install -y wrk), use --tool python")
    return tool


def check_loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise SystemExit(f"only http:// URLs: {url}")
    host = parts.hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise SystemExit(f"cannot resolve {host}: {exc}") from None
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise SystemExit(f"refusing a non-loopback target: {host} ({address})")
    return host, parts.port or 80


def run_load(url: str, *, method: str = "GET", body: bytes | None = None,
             headers: Mapping[str, str] | None = None, paths: Sequence[str] | None = None,
             connections: int = 64, duration: float = 10.0, expect: Sequence[int] = (200,),
             tool: str = "auto", threads: int = 1, timeout: float = 10.0,
             max_requests: int = 10_000_000) -> LoadResult:
    """Load `url` (scheme, host and port; its path unless `paths` gives several to pick from
    at random per request) and return what was measured."""
    if not 0 < duration <= MAX_DURATION:
        raise SystemExit(f"duration must be within 0..{MAX_DURATION:g} s")
    if not 0 < connections <= MAX_CONNECTIONS:
        raise SystemExit(f"connections must be within 1..{MAX_CONNECTIONS}")
    host, port = check_loopback(url)
    target = urlsplit(url)
    path = target.path or "/"
    if target.query:
        path += "?" + target.query
    all_paths = list(paths) if paths else [path]
    headers = dict(headers or {})
    if pick_tool(tool) == "wrk":
        return _run_wrk(f"http://{target.netloc}", method, all_paths, body, headers,
                        connections, duration, threads, timeout)
    return asyncio.run(_run_python(host, port, target.netloc, method, all_paths, body, headers,
                                   connections, duration, set(expect), timeout, max_requests))


# --- the python engine --------------------------------------------------------------------


def _request_bytes(method: str, path: str, netloc: str, body: bytes | None,
                   headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}", "Connection: keep-alive"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _Tally:
    def __init__(self, max_requests: int) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.kinds: dict[str, int] = {}
        self.left = max_requests

    def error(self, kind: str) -> None:
        self.errors += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one answer; (status, whether the server closes the connection)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before the status line")
    status = int(status_line.split(b" ", 2)[1])
    length, chunked, close = 0, False, status_line.startswith(b"HTTP/1.0")
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionResetError("closed within the headers")
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


async def _connection(host: str, port: int, requests: list[bytes], deadline: float,
                      expect: set[int], timeout: float, tally: _Tally) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pick = random.Random().choice
    single = requests[0] if len(requests) == 1 else None
    clock = time.perf_counter
    while clock() < deadline and tally.left > 0:
        if writer is None or reader is None:
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as exc:
                tally.error(f"connect {type(exc).__name__}")
                await asyncio.sleep(0.05)
                continue
        tally.left -= 1
        started = clock()
        try:
            async with asyncio.timeout(timeout):
                writer.write(single or pick(requests))
                status, close = await _read_answer(reader)
        except (OSError, TimeoutError, ValueError, IndexError,
                asyncio.IncompleteReadError) as exc:
            if clock() < deadline:
                tally.error(type(exc).__name__)
            writer.close()
            reader = writer = None
            continue
        ended = clock()
        if ended > deadline:
            break
        tally.latencies.append(ended - started)
        if status not in expect:
            tally.error(f"status {status}")
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _run_python(host: str, port: int, netloc: str, method: str, paths: list[str],
                      body: bytes | None, headers: Mapping[str, str], connections: int,
                      duration: float, expect: set[int], timeout: float,
                      max_requests: int) -> LoadResult:
    requests = [_request_bytes(method, p, netloc, body, headers) for p in paths]
    tally = _Tally(max_requests)
    started = time.perf_counter()
    deadline = started + duration
    await asyncio.gather(*(_connection(host, port, requests, deadline, expect, timeout, tally)
                           for _ in range(connections)))
    measured = min(time.perf_counter(), deadline) - started
    latencies = sorted(tally.latencies)

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        rank = max(0, math.ceil(q * len(latencies)) - 1)  # nearest rank
        return latencies[min(len(latencies) - 1, rank)] * 1000

    return LoadResult("python", connections, measured, len(latencies), tally.errors,
                      pct(0.50), pct(0.99), tally.kinds)


# --- the wrk engine -----------------------------------------------------------------------


def _lua_string(value: str) -> str:
    level = "=" * 4
    while f"]{level}]" in value:
        level += "="
    return f"[{level}[{value}]{level}]"


def _wrk_script(method: str, body: bytes | None, headers: Mapping[str, str],
                paths_file: str | None) -> str:
    parts = [f"wrk.method = {_lua_string(method)}"]
    if body is not None:
        parts.append(f"wrk.body = {_lua_string(body.decode())}")
    for name, value in headers.items():
        parts.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    if paths_file:
        parts.append(textwrap.dedent(f"""\
            local paths = {{}}
            for line in io.lines({_lua_string(paths_file)}) do paths[#paths + 1] = line end
            local threads = 0
            function setup(thread)
              threads = threads + 1
              thread:set("tid", threads)
            end
            function init(args)
              math.randomseed(os.time() * 1000 + tid)
            end
            function request()
              return wrk.format(nil, paths[math.random(#paths)])
            end"""))
    parts.append(textwrap.dedent("""\
        function done(summary, latency, requests)
          local e = summary.errors
          io.write(string.format(
            'BENCH_WRK {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
            '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
            summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
            e.connect, e.read, e.write, e.status, e.timeout))
        end"""))
    return "\n".join(parts) + "\n"


def _run_wrk(base: str, method: str, paths: list[str], body: bytes | None,
             headers: Mapping[str, str], connections: int, duration: float, threads: int,
             timeout: float) -> LoadResult:
    threads = max(1, min(threads, connections))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        paths_file = None
        if len(paths) > 1:
            paths_file = str(Path(tmp) / "paths.txt")
            Path(paths_file).write_text("\n".join(paths) + "\n")
        script = Path(tmp) / "load.lua"
        script.write_text(_wrk_script(method, body, headers, paths_file))
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:g}s",
                "--timeout", f"{timeout:g}s", "-s", str(script), base + paths[0]]
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=duration + timeout + 30)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}\n"
                           f"{done.stderr}")
    found = json.loads(line.removeprefix("BENCH_WRK "))
    kinds = {k: found[k] for k in ("connect", "read", "write", "status", "timeout") if found[k]}
    return LoadResult("wrk", connections, found["duration_us"] / 1e6, found["requests"],
                      sum(kinds.values()), found["p50_us"] / 1000, found["p99_us"] / 1000, kinds)


# --- a self-test: the generators' own ceiling ---------------------------------------------

_TRIVIAL_SERVER = """
import asyncio, sys
ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
          b"Content-Length: 15\\r\\n\\r\\n{\\"status\\":\\"ok\\"}")
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        while b"\\r\\n\\r\\n" in self.buf:
            _, _, self.buf = self.buf.partition(b"\\r\\n\\r\\n")
            self.t.write(ANSWER)
async def main():
    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))
asyncio.run(main())
"""


def self_test(duration: float, connections: int) -> None:
    """Load a trivial asyncio server (one process, one core) with each engine: if the
    generator outruns it, it outruns a 2-core Flask server by far."""
    server = subprocess.Popen([sys.executable, "-c", _TRIVIAL_SERVER, str(4 * duration + 30)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/healthz"
        for tool in (["wrk"] if wrk_available() else []) + ["python"]:
            result = run_load(url, connections=connections, duration=duration, tool=tool)
            print(f"trivial server, {tool:6}: {result.line()}")
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", help="request body (sent as is)")
    parser.add_argument("-H", "--header", action="append", default=[],
                        help="'Name: value', repeatable")
    parser.add_argument("--connections", "-c", type=int, default=64)
    parser.add_argument("--duration", "-d", type=float, default=10.0)
    parser.add_argument("--expect", type=int, action="append",
                        help="expected status, repeatable (default 200)")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--self-test", action="store_true",
                        help="measure each engine against a trivial loopback server")
    parser.add_argument("--quick", action="store_true", help="2 s instead of --duration")
    args = parser.parse_args(argv)
    duration = 2.0 if args.quick else args.duration
    if args.self_test or not args.url:  # no URL: measure the engines themselves
        print(f"{os.cpu_count()} cores; wrk {'found' if wrk_available() else 'not found'}")
        self_test(duration, args.connections)
        return
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if args.body is not None:
        headers.setdefault("Content-Type", "application/json")
    result = run_load(args.url, method=args.method.upper(),
                      body=args.body.encode() if args.body is not None else None,
                      headers=headers, connections=args.connections, duration=duration,
                      expect=args.expect or [200], tool=args.tool, threads=args.threads,
                      max_requests=args.max_requests)
    print(result.line())


if __name__ == "__main__":
    main()
