"""Provider adapters, by the name the catalog gives them."""

from __future__ import annotations

from shared.settings import Settings
from worker.providers.apify import ApifyAdapter
from worker.providers.base import Adapter
from worker.providers.demo import DemoAdapter
from worker.providers.http import HttpAdapter
from worker.providers.transport import make_client


def make_adapters(settings: Settings) -> dict[str, Adapter]:
    """One adapter of each kind, sharing one pooled HTTP client for this process."""
    client = make_client(max_connections=settings.worker_concurrency + 10)
    return {
        "demo": DemoAdapter(),
        "apify": ApifyAdapter(client, base_url=settings.apify_api_base_url,
                              token=settings.apify_token,
                              max_bytes=settings.provider_max_response_bytes),
        "http": HttpAdapter(client, env=settings.provider_env,
                            max_bytes=settings.provider_max_response_bytes),
    }
