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
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from shared.logs import configure_logging
from shared.settings import Settings, load_settings_or_exit

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


@dataclass
class Child:
    index: int
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = 1.0
    restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("worker process started", extra={"index": self.index + 1,
                                                   "pid": self.process.pid})


@dataclass
class Launcher:
    argvs: list[list[str]]
    children: list[Child] = field(default_factory=list)
    stopping: int | None = None  # the signal that asked everything to stop

    def run(self) -> int:
        for sig in FORWARDED:
            signal.signal(sig, self._on_signal)
        self.children = [Child(n, argv) for n, argv in enumerate(self.argvs)]
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
    if len(argvs) == 1:
        os.execv(sys.executable, argvs[0])  # one process: be it, as the Procfile once ran it
    raise SystemExit(Launcher(argvs).run())


if __name__ == "__main__":
    main()
