"""worker.launch: which core each worker process keeps to, and how the launcher
starts a child on it."""

from __future__ import annotations

import logging
import os
from typing import ClassVar

import pytest

from worker import launch


@pytest.mark.parametrize(("allowed", "processes", "enabled", "cores"), [
    ({0, 1}, 2, True, [0, 1]),               # one a core: each its own
    ({7, 3, 5}, 3, True, [3, 5, 7]),         # the cores this process may use, in order
    ({0, 1}, 3, True, [None] * 3),           # more processes than cores: the kernel moves them
    ({0, 1, 2, 3, 4, 5, 6, 7}, 2, True, [None] * 2),  # a share of a host's cores
    ({0}, 1, True, [None]),                  # one process floats (it execs the worker)
    ({0, 1}, 2, False, [None] * 2),          # WORKER_CPU_AFFINITY=false
])
def test_a_core_each_only_when_there_is_one_a_core(
        monkeypatch: pytest.MonkeyPatch, allowed: set[int], processes: int, enabled: bool,
        cores: list[int | None]) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed))
    assert launch.cores_for(processes, enabled) == cores


def test_without_affinity_on_the_platform_no_process_keeps_to_a_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")
    assert launch.cores_for(2) == [None, None]


def test_the_launcher_keeps_to_the_childs_core_only_while_it_starts_it() -> None:
    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    with launch.on_core(core):
        assert os.sched_getaffinity(0) == {core}
    assert os.sched_getaffinity(0) == allowed
    with pytest.raises(RuntimeError), launch.on_core(core):
        raise RuntimeError("the child did not start")
    assert os.sched_getaffinity(0) == allowed
    with launch.on_core(None):
        assert os.sched_getaffinity(0) == allowed


def test_a_core_taken_away_starts_the_child_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    allowed = os.sched_getaffinity(0)
    gone = max(allowed) + 4096  # no such core
    with caplog.at_level(logging.WARNING, logger="monid.worker"), launch.on_core(gone):
        assert os.sched_getaffinity(0) == allowed
    assert os.sched_getaffinity(0) == allowed
    warned = [r for r in caplog.records if r.getMessage() == "a worker process keeps to no core"]
    assert len(warned) == 1 and warned[0].core == gone  # type: ignore[attr-defined]


class _Launched:
    """In place of the Launcher: what main() would start, and nothing started."""
    cores: ClassVar[list[list[int | None]]] = []

    def __init__(self, argvs: list[list[str]], cores: list[int | None]) -> None:
        assert len(argvs) == len(cores)
        _Launched.cores.append(cores)

    def run(self) -> int:
        return 0


@pytest.mark.parametrize("one_a_core", [True, False])
def test_main_gives_each_process_its_core_or_says_why_not(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        one_a_core: bool) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core: a single worker process execs the worker")
    processes = len(cores) if one_a_core else len(cores) + 1
    for name, value in {"DATABASE_URL": "postgresql://monid@db.internal/monid",
                        "REDIS_URL": "redis://cache.internal:6379/0",
                        "WORKER_PROCESSES": str(processes),
                        "WORKER_CPU_AFFINITY": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launch, "configure_logging", lambda level: None)
    monkeypatch.setattr(launch, "Launcher", _Launched)
    _Launched.cores = []
    with caplog.at_level(logging.WARNING, logger="monid.worker"), \
            pytest.raises(SystemExit) as exited:
        launch.main([])
    assert exited.value.code == 0
    warned = [r for r in caplog.records if r.getMessage().startswith("WORKER_CPU_AFFINITY")]
    if one_a_core:
        assert _Launched.cores == [cores] and not warned
    else:
        assert _Launched.cores == [[None] * processes]
        assert len(warned) == 1 and warned[0].processes == processes  # type: ignore[attr-defined]
