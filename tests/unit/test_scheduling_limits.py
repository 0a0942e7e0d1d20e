"""The deployment's concurrency limits: the catalog's, with the settings' over them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.catalog import load_catalog
from shared.scheduling import Limits, concurrency_limits
from shared.settings import SettingsError, load_settings

ENV = {"DATABASE_URL": "postgresql://u@127.0.0.1/x", "REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    (tmp_path / "acme.json").write_text(json.dumps({
        "provider": "acme", "name": "Acme", "adapter": "demo", "maxConcurrent": 10,
        "endpoints": [
            {"path": "/slow", "name": "Slow", "description": "Slow.", "maxConcurrent": 2,
             "inputSchema": {"type": "object"}, "price": {"type": "PER_CALL", "amount": 0},
             "call": {"action": "sleep"}},
            {"path": "/fast", "name": "Fast", "description": "Fast.",
             "inputSchema": {"type": "object"}, "price": {"type": "PER_CALL", "amount": 0},
             "call": {"action": "echo"}}]}))
    return tmp_path


def test_the_catalogs_limits(catalog_dir: Path) -> None:
    limits = concurrency_limits(load_settings({**ENV, "CALLER_CONCURRENCY": "7",
                                               "WORKER_CONCURRENCY": "40"}),
                                load_catalog(catalog_dir))
    # A run over its caller's 7 threads waits up to a second in its process, while at
    # most a quarter of the process's 40 threads wait so.
    assert limits == Limits(caller=7, by_key={"acme": 10, "acme/slow": 2}, caller_wait=1.0,
                            caller_waiters=10)


def test_runs_over_their_callers_threads_wait_in_the_process_as_set(catalog_dir: Path) -> None:
    catalog = load_catalog(catalog_dir)
    limits = concurrency_limits(load_settings({**ENV, "CALLER_WAIT_SECONDS": "0.25"}), catalog)
    assert (limits.caller_wait, limits.caller_waiters) == (0.25, 200 // 4)
    parked_at_once = concurrency_limits(load_settings({**ENV, "CALLER_WAIT_SECONDS": "0"}),
                                        catalog)
    assert parked_at_once.caller_wait == 0
    unlimited = concurrency_limits(load_settings({**ENV, "CALLER_CONCURRENCY": "0"}), catalog)
    assert (unlimited.caller_wait, unlimited.caller_waiters) == (0, 0)


def test_settings_override_the_catalog(catalog_dir: Path) -> None:
    settings = load_settings({**ENV, "PROVIDER_CONCURRENCY": "acme=3,acme/fast=1"})
    limits = concurrency_limits(settings, load_catalog(catalog_dir))
    assert limits.by_key == {"acme": 3, "acme/slow": 2, "acme/fast": 1}


@pytest.mark.parametrize("value", ["nobody=3", "acme/nothing=2"])
def test_a_setting_naming_nothing_in_the_catalog_is_a_configuration_error(
        catalog_dir: Path, value: str) -> None:
    settings = load_settings({**ENV, "PROVIDER_CONCURRENCY": value})
    with pytest.raises(SettingsError) as caught:
        concurrency_limits(settings, load_catalog(catalog_dir))
    assert caught.value.variable == "PROVIDER_CONCURRENCY"
    assert value.partition("=")[0] in caught.value.problem
