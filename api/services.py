"""The service layer's services of this app (`shared.services`), built by `create_app`."""

from __future__ import annotations

from typing import cast

from flask import current_app

from shared.services import Services

__all__ = ["Services", "services"]


def services() -> Services:
    return cast(Services, current_app.extensions["monid"])
