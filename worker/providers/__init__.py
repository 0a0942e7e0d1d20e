"""Provider adapters, by the name the catalog gives them.

Each adapter module registers its class under the entry point group
`monid.adapters` (pyproject.toml); the class carries the schema of its endpoints'
`call` (which the catalog checks) and makes itself from the settings.
"""

from __future__ import annotations

from shared.catalog import Catalog, load_catalog
from shared.catalog.adapters import registered_adapters
from shared.settings import Settings
from worker.providers.base import Adapter
from worker.providers.redact import RedactingAdapter, secret_values
from worker.providers.transport import make_client


def make_adapters(settings: Settings, catalog: Catalog | None = None) -> dict[str, Adapter]:
    """One adapter of each kind, sharing one pooled HTTP client for this process; what
    they bring back has every configured secret of `catalog` (the settings' own when
    not given) redacted."""
    client = make_client(max_connections=settings.worker_concurrency + 10)
    secrets = secret_values(settings, catalog or load_catalog(settings.catalog_dir))
    adapters: dict[str, Adapter] = {name: kind.from_settings(settings, client)
                                    for name, kind in registered_adapters().items()}
    return {name: RedactingAdapter(adapter, secrets) for name, adapter in adapters.items()}
