"""Provider adapters, by the name the catalog gives them."""

from __future__ import annotations

from worker.providers.base import Adapter
from worker.providers.demo import DemoAdapter


def make_adapters() -> dict[str, Adapter]:
    return {"demo": DemoAdapter()}
