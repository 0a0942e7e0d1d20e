"""What every process does first: read the settings and set up logging, then build its
pieces, and stop with one clear line (exit status 2) when the configuration is wrong."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from shared.catalog import CatalogError
from shared.logs import configure_logging
from shared.settings import Settings, SettingsError, load_settings_or_exit

T = TypeVar("T")


def configured() -> Settings:
    """The settings (or exit with the first bad one), with logging set up from them."""
    settings = load_settings_or_exit()
    configure_logging(settings.log_level)
    return settings


def or_exit(build: Callable[[], T]) -> T:
    """`build()`, or exit 2 with one line if the catalog or a setting is wrong."""
    try:
        return build()
    except CatalogError as exc:
        print(f"monid: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
