"""Generic synchronous JSON APIs, declared per endpoint in the catalog.

The endpoint's `call` says: `method`, `baseUrl` (and `baseUrlEnv`, a variable
that overrides it), `path` (a template whose `{name}` parts come from the
input's `pathParams`), fixed `query` parameters, `bodyAs` (`json`, or `query`
for GET APIs whose flat input is their query string), `auth`
(`{"header": ..., "prefix": ..., "secretEnv": ...}` or
`{"query": ..., "secretEnv": ...}`), `timeoutSeconds`, `resultsPath` (the
dotted path of the list whose elements are the run's items) and `idempotencyHeader`
(a header that carries `<runId>:<attempt>`, for providers that honour one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from shared.catalog import BAD_PATH_PARAMS
from shared.settings import Settings
from worker.providers.base import (
    PermanentError,
    PlatformError,
    ProviderCall,
    ProviderResult,
    TransientError,
)
from worker.providers.transport import raise_for_status, send

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
METHODS_WITHOUT_BODY = frozenset({"GET", "DELETE", "HEAD"})


def items_path(results_path: str | None) -> tuple[str, ...] | None:
    """`resultsPath` (`data.items`) as the path of the answer's items."""
    parts = tuple(part for part in (results_path or "").split(".") if part)
    return parts or None


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


class HttpAdapter:
    # An endpoint's `call` (registered as the `http` adapter: pyproject.toml).
    CALL_SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["method", "baseUrl", "path"],
        "additionalProperties": False,
        "properties": {
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "baseUrl": {"type": "string", "pattern": "^https?://[^/]+$"},
            "baseUrlEnv": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
            "path": {"type": "string", "pattern": "^/"},
            "query": {"type": "object"},
            "bodyAs": {"enum": ["json", "query"]},
            "auth": {
                "type": "object",
                "required": ["secretEnv"],
                "additionalProperties": False,
                "properties": {
                    "secretEnv": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                    "header": {"type": "string", "minLength": 1},
                    "prefix": {"type": "string"},
                    "query": {"type": "string", "minLength": 1},
                },
                "oneOf": [{"required": ["header"]}, {"required": ["query"]}],
            },
            "timeoutSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
            "resultsPath": {"type": "string"},
            "idempotencyHeader": {"type": "string", "minLength": 1},
        },
    }

    @staticmethod
    def check_call(call: Mapping[str, Any], endpoint: Mapping[str, Any]) -> list[str]:
        """Every `{name}` of the path template must be a path parameter the endpoint
        requires: a run without it could not be sent."""
        required = set((endpoint.get("pathParamsSchema") or {}).get("required", []))
        return [f"call/path uses {{{name}}}, which pathParamsSchema does not require"
                for name in _PARAM.findall(call["path"]) if name not in required]

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.Client) -> HttpAdapter:
        return cls(client, env=settings.provider_env,
                   max_bytes=settings.provider_max_response_bytes)

    def __init__(self, client: httpx.Client, *, env: Mapping[str, str], max_bytes: int) -> None:
        self.client = client
        self.env = env
        self.max_bytes = max_bytes

    def url(self, call: Mapping[str, Any], path_params: Mapping[str, Any]) -> str:
        base = (self.env.get(call.get("baseUrlEnv", "")) or call["baseUrl"]).rstrip("/")

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in path_params:
                raise PermanentError(f"input.pathParams.{name} is required")
            value = str(path_params[name])
            if value in BAD_PATH_PARAMS:  # refused at accept time; never sent on
                raise PermanentError(f"input.pathParams.{name} must not be empty, '.' or '..'")
            return quote(value, safe="")

        return base + _PARAM.sub(fill, call.get("path", ""))

    def call(self, request: ProviderCall) -> ProviderResult:
        call = request.call
        method = str(call.get("method", "POST")).upper()
        headers: dict[str, str] = {"Accept": "application/json"}
        if call.get("idempotencyHeader"):
            # One key per attempt: a provider that honours it never does one
            # attempt's work twice.
            headers[call["idempotencyHeader"]] = f"{request.run_id}:{request.attempt}"
        params: dict[str, Any] = {k: _query_value(v) for k, v in call.get("query", {}).items()}
        params.update({k: _query_value(v) for k, v in request.query_params.items()})
        body: Any = dict(request.body)
        has_body = method not in METHODS_WITHOUT_BODY
        if call.get("bodyAs") == "query":
            params.update({k: _query_value(v) for k, v in body.items()})
            has_body = False
        auth = call.get("auth")
        if auth:
            secret = self.env.get(auth["secretEnv"], "")
            if not secret:
                raise PlatformError(f"the provider's secret is not configured: set "
                                    f"{auth['secretEnv']}")
            if "header" in auth:
                headers[auth["header"]] = auth.get("prefix", "") + secret
            else:
                params[auth["query"]] = secret
        left = (request.deadline_at - datetime.now(UTC)).total_seconds()
        if left <= 0:
            raise TransientError("the run's deadline has passed")
        timeout = min(float(call.get("timeoutSeconds", 60)), left)
        answer = send(self.client, method, self.url(call, request.path_params),
                      max_bytes=self.max_bytes, timeout=timeout, headers=headers,
                      params=params, json_body=body, has_body=has_body)
        raise_for_status(answer)
        output = answer.json() if answer.content.strip() else None
        return ProviderResult(output=output, http_status=answer.status,
                              items_path=items_path(call.get("resultsPath")))

    def abort(self, request: ProviderCall) -> None:
        """A synchronous call has nothing to abort: its answer is discarded."""
