"""The layers: the service layer knows nothing of HTTP or Celery, the API reaches the
database only through it, and every error it raises has its one answer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from api import errors as api_errors
from shared import errors

ROOT = Path(__file__).resolve().parents[2]
SERVICE_MODULES = ["shared/errors.py", "shared/services.py", "shared/callers.py",
                   "shared/runs.py", "shared/items.py", "shared/wallets.py",
                   "shared/catalog/discovery.py", "shared/waiting.py", "shared/keycache.py",
                   "shared/accounts.py"]


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", SERVICE_MODULES)
def test_the_service_layer_imports_neither_flask_nor_celery(module: str) -> None:
    tops = {name.split(".")[0] for name in imported(ROOT / module)}
    assert not tops & {"flask", "werkzeug", "celery", "kombu", "api", "worker"}, module


def test_the_api_reads_and_writes_through_the_service_layer() -> None:
    for path in sorted((ROOT / "api").glob("*.py")):
        if path.name == "metrics.py":  # reads the cluster's numbers for Prometheus
            continue
        reached = {name for name in imported(path)
                   if name == "shared.store" or name.startswith("shared.store.")}
        reached |= imported(path) & {"shared.db.autocommit", "shared.db.transaction",
                                     "shared.db.connect"}
        assert not reached, path.name


def kinds(cls: type[errors.ServiceError]) -> list[type[errors.ServiceError]]:
    return [cls, *(k for sub in cls.__subclasses__() for k in kinds(sub))]


@pytest.mark.parametrize("kind", kinds(errors.ServiceError)[1:], ids=lambda k: k.__name__)
def test_every_service_error_has_its_answer(kind: type[errors.ServiceError]) -> None:
    answer = api_errors.answer_for(kind.__new__(kind))
    assert answer is not None and answer is not api_errors.INTERNAL
    assert answer.code in api_errors.ERROR_CODES


def test_each_error_code_is_at_one_status_but_one() -> None:
    statuses: dict[str, set[int]] = {}
    for answer in api_errors.ERRORS:
        statuses.setdefault(answer.code, set()).add(answer.status)
    # A key reused with another body is 422; one whose first request is still in
    # progress, 409.
    assert {code for code, found in statuses.items() if len(found) > 1} == {
        "IDEMPOTENCY_KEY_REUSED"}
