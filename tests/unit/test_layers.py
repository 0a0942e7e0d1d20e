"""The packages' dependency direction: `api` and `worker` import `shared`, never each
other, and no module imports another that imports it back, not even from inside a
function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "worker", "shared")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict[str, set[str]]:
    """Each project module and the project modules it imports, anywhere in its body."""
    modules = {module_name(path): path for package in PACKAGES
               for path in sorted((ROOT / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` imports the module; `from module import
                # name`, the module.
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}"
                           in modules else node.module for alias in node.names]
            else:
                continue
            found |= {target for target in targets if target in modules and target != name}
        graph[name] = found
    return graph


GRAPH = project_imports()


@pytest.mark.parametrize(("importer", "imported"), [
    ("shared", "api"), ("shared", "worker"), ("api", "worker"), ("worker", "api")])
def test_a_package_never_imports_the_ones_above_or_beside_it(importer: str,
                                                             imported: str) -> None:
    wrong = sorted(f"{module} -> {target}" for module, targets in GRAPH.items()
                   if module.split(".")[0] == importer
                   for target in targets if target.split(".")[0] == imported)
    assert wrong == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo.extend(GRAPH.get(module, ()))
        return False

    cycles = sorted(f"{module} <-> {target}" for module, targets in GRAPH.items()
                    for target in targets
                    if not module.startswith(f"{target}.") and reaches(target, module))
    assert cycles == []


def test_the_graph_sees_imports_inside_functions() -> None:
    assert "worker.providers" in GRAPH["worker.sweeper"]
    assert "shared.catalog" in GRAPH["worker.app"]
