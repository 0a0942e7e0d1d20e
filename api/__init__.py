"""The web tier: a thin Flask API that stores runs and enqueues them."""

from api.app import create_app

__all__ = ["create_app"]
