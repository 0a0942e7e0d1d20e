"""Secrets never stored from a provider's answer.

A provider that echoes the request (its headers, its URL) would hand our own
secret back, and the run would store it where its caller reads it. Every
configured secret (each catalog endpoint's `secretEnv`, and `APIFY_TOKEN`) is
replaced by `[REDACTED]` wherever it appears in an answer, an error body or an
error message, as it is and percent-encoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from shared.catalog import Catalog
from shared.settings import Settings
from worker.providers.base import Adapter, Pending, ProviderCall, ProviderError, ProviderResult

REDACTED = "[REDACTED]"
# Shorter values are not looked for: replacing a two-letter "secret" everywhere would
# mangle the data, and no real token is that short.
MIN_SECRET_CHARS = 8


def secret_values(settings: Settings, catalog: Catalog) -> tuple[str, ...]:
    """Every configured secret's value (and its percent-encoded form), longest first."""
    names = {endpoint.call["auth"]["secretEnv"] for endpoint in catalog.all()
             if isinstance(endpoint.call.get("auth"), Mapping)}
    values = {settings.provider_env.get(name, "") for name in names} | {settings.apify_token}
    forms = {form for value in values if len(value) >= MIN_SECRET_CHARS
             for form in (value, quote(value, safe=""))}
    return tuple(sorted(forms, key=len, reverse=True))


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (JSON: text, numbers, lists, objects) with every secret replaced."""
    secrets = tuple(secrets)
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets) for item in value]
    return value


class RedactingAdapter:
    """An adapter whose answers and errors come back without our secrets in them."""

    def __init__(self, inner: Adapter, secrets: Iterable[str]) -> None:
        self.inner = inner
        self.secrets = tuple(secrets)

    def call(self, request: ProviderCall) -> ProviderResult | Pending:
        try:
            result = self.inner.call(request)
        except ProviderError as exc:
            exc.message = redact(exc.message, self.secrets)
            exc.body = redact(exc.body, self.secrets)
            exc.args = (exc.message,)
            raise
        if isinstance(result, ProviderResult):
            return dataclasses.replace(result, output=redact(result.output, self.secrets))
        return result

    def abort(self, request: ProviderCall) -> None:
        self.inner.abort(request)
