"""Provider adapters, by the name the catalog gives them."""

from __future__ import annotations

from shared.catalog import Catalog, load_catalog
from shared.settings import Settings
from worker.providers.apify import ApifyAdapter
from worker.providers.base import Adapter
from worker.providers.demo import DemoAdapter
from worker.providers.http import HttpAdapter
from worker.providers.redact import RedactingAdapter, secret_values
from worker.providers.transport import make_client


def make_adapters(settings: Settings, catalog: Catalog | None = None) -> dict[str, Adapter]:
    """One adapter of each kind, sharing one pooled HTTP client for this process; what
    they bring back has every configured secret of `catalog` (the settings' own when
    not given) redacted."""
    client = make_client(max_connections=settings.worker_concurrency + 10)
    secrets = secret_values(settings, catalog or load_catalog(settings.catalog_dir))
    adapters: dict[str, Adapter] = {
        "demo": DemoAdapter(),
        "apify": ApifyAdapter(client, base_url=settings.apify_api_base_url,
                              token=settings.apify_token,
                              max_bytes=settings.provider_max_response_bytes),
        "http": HttpAdapter(client, env=settings.provider_env,
                            max_bytes=settings.provider_max_response_bytes),
    }
    return {name: RedactingAdapter(adapter, secrets) for name, adapter in adapters.items()}
