"""Sampling profiles of running processes with py-spy, and what their samples add up to.

`record()` starts one `py-spy record --format speedscope` per pid (the files open in
https://www.speedscope.app); `summarize()` reads them: the share of samples in which
each function is on the stack (inclusive) and at the top (self), across all files.

Modes: `gil` samples only the thread holding the GIL (where a Python process spends its
CPU: with 64 threads per gunicorn worker, the GIL is what they queue for); `idle` samples
every thread, waiting or not (where requests spend their wall time).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pids: Iterable[int], out_dir: Path, duration: float, mode: str = "gil",
           rate: int = 200) -> list[subprocess.Popen[bytes]]:
    """Start one `py-spy record` per pid, writing `<mode>-<pid>.speedscope.json` in
    `out_dir`; wait on the returned processes."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in pids:
        argv = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(duration))),
                "--rate", str(rate), "--format", "speedscope", "--nonblocking",
                "-o", str(out_dir / f"{mode}-{pid}.speedscope.json")]
        if mode == "gil":
            argv.append("--gil")
        elif mode == "idle":
            argv.append("--idle")
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    return procs


# Where a frame's file is a library's: what follows is its name within the library.
_LIBRARY = re.compile(r".*(?:site-packages/|lib/python3\.\d+t?/)")


def _short(name: str, path: str) -> str:
    shortened = _LIBRARY.sub("", path, count=1)
    if shortened == path:
        with contextlib.suppress(ValueError):
            shortened = str(Path(path).resolve().relative_to(ROOT))
    return f"{name} ({shortened})"


def summarize(files: Iterable[Path], top: int = 25, within: str | None = None
              ) -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, [(function, % of samples on the stack)], [(function, % at the top)]);
    `within`: only the samples with that function (its bare name) on the stack."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0.0
    for path in files:
        data = json.loads(path.read_text())
        frames = data["shared"]["frames"]
        names = [_short(f["name"], f.get("file") or "") for f in frames]
        wanted = {i for i, f in enumerate(frames) if f["name"] == within}
        for profile in data["profiles"]:
            for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
                if not stack or (within and not wanted.intersection(stack)):
                    continue
                total += weight
                for func in {names[i] for i in stack}:
                    inclusive[func] += weight
                own[names[stack[-1]]] += weight

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, 100.0 * c / total) for f, c in counter.most_common(top)] if total else []

    return total, share(inclusive), share(own)


def breakdown(files: Iterable[Path], items: list[tuple[str, str]], within: str | None = None
              ) -> list[tuple[str, float]]:
    """For each (label, function), the % of samples with that function on the stack; a
    function is its name (a method's without its class, too), or `name@part` to also match
    part of its file's path."""
    counts = [0.0] * len(items)
    total = 0.0
    for path in files:
        data = json.loads(path.read_text())
        frames = data["shared"]["frames"]
        wanted = {i for i, f in enumerate(frames) if f["name"] == within}
        matches = []
        for _, spec in items:
            name, _, part = spec.partition("@")
            matches.append({i for i, f in enumerate(frames)
                            if (f["name"] == name or f["name"].endswith("." + name))
                            and part in (f.get("file") or "")})
        for profile in data["profiles"]:
            for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
                if not stack or (within and not wanted.intersection(stack)):
                    continue
                total += weight
                on_stack = set(stack)
                for n, match in enumerate(matches):
                    if match & on_stack:
                        counts[n] += weight
    return [(label, 100.0 * c / total if total else 0.0)
            for (label, _), c in zip(items, counts, strict=True)]


def print_summary(title: str, files: Iterable[Path], top: int = 30, rate: int = 200,
                  within: str | None = None) -> None:
    total, inclusive, own = summarize(list(files), top, within)
    print(f"\n{title}: {round(total * rate)} samples")
    print("  on the stack (inclusive %):")
    for func, pct in inclusive:
        print(f"    {pct:5.1f}%  {func}")
    print("  at the top of the stack (self %):")
    for func, pct in own:
        print(f"    {pct:5.1f}%  {func}")
