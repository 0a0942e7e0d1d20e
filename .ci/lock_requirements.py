#!/usr/bin/env python3
"""requirements.txt: what a deployment installs, every package pinned.

Heroku-style Python buildpacks install `requirements.txt`; this writes it from
pyproject.toml's `[project] dependencies` (no extras: the embedded servers and the
test tools never deploy), as pip resolves them, then `.` (the project itself, for
`monidctl` and its package data).

    python .ci/lock_requirements.py           # after a change of dependencies (needs the index)
    python .ci/lock_requirements.py --check   # is requirements.txt current? (what CI runs)

The check needs no network: requirements.txt records a digest of the dependencies it
was made from; every dependency must be pinned to a version its specifier allows;
and every pinned package installed here must be the pinned version, with each of its
own requirements pinned too (CI installs requirements.txt first, so there the whole
tree is checked).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "requirements.txt"
DIGEST_LINE = "# pyproject dependencies sha256: "
COMMAND = "python .ci/lock_requirements.py"


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads(PYPROJECT.read_text())["project"]
    return data


def dependencies() -> list[Requirement]:
    return [Requirement(text) for text in project()["dependencies"]]  # type: ignore[attr-defined]


def never_deployed() -> list[str]:
    """The packages that must not be pinned: the `local` extra's (the embedded servers)
    and the test runner."""
    local = project()["optional-dependencies"]["local"]  # type: ignore[index]
    return [canonicalize_name(Requirement(text).name) for text in local] + ["pytest"]


def digest() -> str:
    data = project()
    source = json.dumps({"dependencies": sorted(data["dependencies"]),  # type: ignore[arg-type]
                         "requires-python": data.get("requires-python")}, sort_keys=True)
    return hashlib.sha256(source.encode()).hexdigest()


def resolve() -> list[tuple[str, str]]:
    """What pip would install for the project on its own, from the index."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
                        "--ignore-installed", "--report", str(report), str(ROOT)], check=True)
        installs = json.loads(report.read_text())["install"]
    own = canonicalize_name(str(project()["name"]))
    pins = {(item["metadata"]["name"], item["metadata"]["version"]) for item in installs}
    return sorted((n, v) for n, v in pins if canonicalize_name(n) != own)


def write() -> None:
    lines = [
        "# What a deployment installs (Heroku-style buildpacks read this file): pyproject.toml's",
        "# dependencies, every package pinned, then the project itself. Do not edit: after a",
        f"# change of dependencies run `{COMMAND}`; CI checks it is current.",
        f"{DIGEST_LINE}{digest()}",
        *(f"{name}=={version}" for name, version in resolve()),
        ".",
    ]
    REQUIREMENTS.write_text("\n".join(lines) + "\n")


def pinned() -> dict[str, tuple[str, str]]:
    """requirements.txt's pins, by canonical name: (name as written, version)."""
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == ".":
            continue
        name, _, version = line.partition("==")
        pins[canonicalize_name(name)] = (name, version)
    return pins


def problems() -> list[str]:
    """What makes requirements.txt stale or incomplete; [] when it is current."""
    if not REQUIREMENTS.is_file():
        return [f"requirements.txt is missing: run `{COMMAND}`"]
    text = REQUIREMENTS.read_text()
    found: list[str] = []
    if f"{DIGEST_LINE}{digest()}" not in text.splitlines():
        found.append(f"requirements.txt was not made from pyproject.toml's dependencies as "
                     f"they are now: run `{COMMAND}`")
    if text.splitlines()[-1:] != ["."]:
        found.append("requirements.txt must end with `.`, the project itself")
    pins = pinned()
    for line in text.splitlines():
        if line and not line.startswith("#") and line != "." and "==" not in line:
            found.append(f"requirements.txt: {line!r} is not pinned with ==")
    for extra_package in never_deployed():
        if extra_package in pins:
            found.append(f"requirements.txt pins {extra_package}, which never deploys")
    environment = default_environment()
    wanted: list[tuple[Requirement, str]] = [(r, "pyproject.toml") for r in dependencies()]
    checked: set[str] = set()
    while wanted:
        requirement, why = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name not in pins:
            found.append(f"{requirement.name} ({why}) is not in requirements.txt: run "
                         f"`{COMMAND}`")
            continue
        written, version = pins[name]
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(f"requirements.txt pins {written}=={version}, but {why} asks for "
                         f"{requirement}: run `{COMMAND}`")
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in checked:
            continue
        checked.add(key)
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: CI, which installs requirements.txt, checks it
        if installed != version:
            found.append(f"{written} {installed} is installed, but requirements.txt pins "
                         f"{version}: install it with `pip install -r requirements.txt`")
            continue
        for text_requirement in metadata.requires(name) or []:
            sub = Requirement(text_requirement)
            extras = requirement.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({**environment, "extra": extra})
                                         for extra in extras):
                wanted.append((sub, f"{written}=={version}"))
    return found


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        found = problems()
        for problem in found:
            print(problem, file=sys.stderr)
        return 1 if found else 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    write()
    print(f"wrote {REQUIREMENTS.name}: {len(pinned())} packages pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
