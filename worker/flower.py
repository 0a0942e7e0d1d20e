"""Flower, locked: `python -m worker.flower [Flower's own options]`.

It starts only with a login (FLOWER_BASIC_AUTH, or FLOWER_AUTH with its OAuth
settings) unless FLOWER_UNAUTHENTICATED=true says it may go without; it listens
on FLOWER_ADDRESS (127.0.0.1 unless told otherwise) and FLOWER_PORT (5555). It
needs only REDIS_URL (and its REDIS_SSL_* policy): no database, no catalog, so an
operator can run it on their own machine against a platform's Redis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from celery import Celery

from shared.queue import flower_config
from shared.settings import FlowerSettings, load_flower_settings_or_exit


def make_flower_app(settings: FlowerSettings) -> Celery:
    return Celery("monid", config_source=flower_config(settings), set_as_current=True)


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_flower_settings_or_exit()
    # Flower reads every FLOWER_* variable as one of its options: it stops at one it
    # does not know (FLOWER_UNAUTHENTICATED is ours, and has been read), and takes an
    # empty one at its word (an empty FLOWER_BASIC_AUTH would be a login nobody has).
    for name in [n for n in os.environ if n.startswith("FLOWER_")]:
        if name == "FLOWER_UNAUTHENTICATED" or not os.environ[name].strip():
            del os.environ[name]
    args = list(sys.argv[1:] if argv is None else argv)
    code = make_flower_app(settings).start(
        ["flower", f"--address={settings.address}", f"--port={settings.port}", *args])
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
