"""The `worker` process of the Procfile: WORKER_PROCESSES Celery workers, each with its
own pool of WORKER_CONCURRENCY threads, as gunicorn runs WEB_CONCURRENCY web
processes. One Python process is bound to one core by the GIL; several use every
core of the dyno while each keeps hundreds of runs in flight.

    python -m worker.launch [celery worker options...]

It starts the children, hands every signal it gets (SIGTERM: the platform's warm
shutdown; SIGINT, SIGQUIT) to all of them, starts again a child that dies while the
others run (after a pause that grows while it keeps dying), and exits once all have
exited after a signal. A child that dies loses nothing: its runs' leases expire and
the sweeper hands them to the others.

With WORKER_CPU_AFFINITY and one worker process a core (the default count), each
keeps to its own core. A process's threads hand its GIL to each other thousands of
times a second, and each handoff to a thread on another core wakes that core (an
interrupt between processors; on a virtual machine, an exit to its host): kept to one
core each, two worker processes on two cores completed 1.4 times the runs a second for
a fifth less CPU a run (`bench.throughput --cpu-affinity`). It is for cores that are
the worker's own: where a host's cores are shared (a container under a CPU quota sees
them all) or a web process shares them, a process kept to a core cannot move off a
busy one. Where the processes outnumber the cores, or are fewer, none keeps to one.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from shared.logs import configure_logging
from shared.settings import Settings, allowed_cores, available_cores, load_settings_or_exit

log = logging.getLogger("monid.worker")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# A child that dies within this long of its start is restarted after a growing pause.
QUICK_DEATH_SECONDS = 10.0
MAX_PAUSE_SECONDS = 30.0


def worker_argv(settings: Settings, index: int, extra: Sequence[str] = ()) -> list[str]:
    """One child: the Celery worker as the Procfile ran it before, one of several (task
    events as WORKER_TASK_EVENTS says, through the worker's configuration)."""
    return [sys.executable, "-m", "celery", "--app", "worker.main", "--quiet", "worker",
            "--loglevel", settings.log_level, "--without-gossip", "--without-mingle",
            "--concurrency", str(settings.worker_concurrency),
            "--hostname", f"worker{index + 1}@{socket.gethostname()}", *extra]


def cores_for(processes: int, enabled: bool = True) -> list[int | None]:
    """The core each of `processes` worker processes keeps to: a core of its own when
    there is one a core this process may use, none (the kernel's choice) otherwise."""
    cores = allowed_cores()
    if not enabled or processes < 2 or len(cores) != processes:
        return [None] * processes
    return list(cores)


@contextmanager
def on_core(core: int | None) -> Iterator[None]:
    """The launcher kept to `core` while it starts a child: the child, and every thread
    the child starts, keeps to the cores it was started on."""
    if core is None:
        yield
        return
    allowed: set[int] | None = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {core})
    except OSError as exc:  # the core was taken away since: this child goes anywhere
        log.warning("a worker process keeps to no core",
                    extra={"core": core, "error": str(exc)})
        allowed = None
    try:
        yield
    finally:
        if allowed is not None:
            os.sched_setaffinity(0, allowed)


@dataclass
class Child:
    index: int
    argv: list[str]
    core: int | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = 1.0
    restart_at: float | None = None

    def start(self) -> None:
        with on_core(self.core):
            self.process = subprocess.Popen(self.argv)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("worker process started", extra={"index": self.index + 1,
                                                   "pid": self.process.pid,
                                                   "core": self.core})


@dataclass
class Launcher:
    argvs: list[list[str]]
    cores: list[int | None]  # each child's (None: the kernel's choice)
    children: list[Child] = field(default_factory=list)
    stopping: int | None = None  # the signal that asked everything to stop

    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._on_signal)
        self.children = [Child(n, argv, core) for n, (argv, core)
                         in enumerate(zip(self.argvs, self.cores, strict=True))]
        for child in self.children:
            child.start()
        while True:
            if self.stopping is not None and all(c.process is None for c in self.children):
                return 0
            self._reap()
            time.sleep(0.2)

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if self.stopping is None:
            log.info("stopping every worker process", extra={"signal": signal.Signals(signum).name})
        self.stopping = signum
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signum)

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                code = child.process.returncode
                child.process = None
                if self.stopping is not None:
                    continue
                quick = now - child.started_at < QUICK_DEATH_SECONDS
                child.pause = min(child.pause * 2, MAX_PAUSE_SECONDS) if quick else 1.0
                child.restart_at = now + child.pause
                log.warning("a worker process exited; starting another",
                            extra={"index": child.index + 1, "exitCode": code,
                                   "inSeconds": child.pause})
            elif (child.process is None and child.restart_at is not None
                  and now >= child.restart_at and self.stopping is None):
                child.start()


def main(argv: Sequence[str] | None = None) -> None:
    settings = load_settings_or_exit()
    configure_logging(settings.log_level)
    extra = list(sys.argv[1:] if argv is None else argv)
    argvs = [worker_argv(settings, n, extra) for n in range(settings.worker_processes)]
    cores = cores_for(len(argvs), settings.worker_cpu_affinity)
    if settings.worker_cpu_affinity and cores[0] is None:
        log.warning("WORKER_CPU_AFFINITY: no worker process keeps to a core, as there is "
                    "not one a core", extra={"processes": len(argvs),
                                             "cores": available_cores()})
    if len(argvs) == 1:
        os.execv(sys.executable, argvs[0])  # one process: be it, as the Procfile once ran it
    raise SystemExit(Launcher(argvs, cores).run())


if __name__ == "__main__":
    main()
