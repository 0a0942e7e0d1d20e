"""The catalog: providers and their endpoints, declared in JSON files.

Each `*.json` file of the catalog folder declares one provider and its
endpoints. Files are validated when loaded; any problem raises `CatalogError`
with every problem listed, so a broken catalog stops start-up. An endpoint's
`call` is checked against the description its adapter registers
(`shared/catalog/adapters.py`).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from shared.catalog.adapters import AdapterKind, AdaptersMissing, adapter_kinds
from shared.money import dollars_to_micros

# What a path parameter may not be: it would leave a gap in the path, or name the
# segment itself or its parent (HTTP clients resolve `.` and `..` away).
BAD_PATH_PARAMS = frozenset({"", ".", ".."})


@lru_cache(maxsize=1024)
def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """A JSON Schema `pattern` compiled as ECMA-262 reads it: there, `$` matches only at
    the very end of the text; in Python it matches before a final newline too, so
    `^[a-z]+$` would let "abc\\n" through. Each `$` outside a character class
    becomes `\\Z`."""
    out: list[str] = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            if char == "]" and out[-1] not in ("[", "[^"):
                in_class = False
        elif char == "[":
            in_class = True
            if pattern.startswith("[^", index):
                out.append("[^")
                index += 2
                continue
        elif char == "$":
            char = r"\Z"
        out.append(char)
        index += 1
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not ecma_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Mapping[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if ecma_pattern(pattern).search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(validator: Any, allowed: Any, instance: Any,
                           schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = [ecma_pattern(p) for p in schema.get("patternProperties", {})]
    extras = [name for name in instance
              if name not in known and not any(p.search(name) for p in patterns)]
    if validator.is_type(allowed, "object"):
        for name in extras:
            yield from validator.descend(instance[name], allowed, path=name)
    elif allowed is False and extras:
        verb = "was" if len(extras) == 1 else "were"
        yield ValidationError("Additional properties are not allowed ("
                              + ", ".join(repr(name) for name in extras) + f" {verb} unexpected)")


# Draft 2020-12, with patterns matched as the JSON Schema specification says.
Validator = validators.extend(Draft202012Validator, {
    "pattern": _pattern, "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties})
COMPOSITE_PARTS = ("body", "queryParams", "pathParams")

_PRICE_SCHEMA = {
    "type": "object",
    "required": ["type", "amount"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["PER_CALL", "PER_RESULT"]},
        "amount": {"type": ["number", "string"]},
        "flatFee": {"type": ["number", "string"]},
        "maxResults": {"type": "integer", "minimum": 1},
        # Where the input caps the results (e.g. "body.maxItems"): a lower cap
        # there lowers the run's hold and its most possible charge.
        "maxResultsInput": {"type": "string",
                            "pattern": "^(body|queryParams|pathParams)\\.[A-Za-z0-9_]+$"},
    },
}

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["provider", "name", "adapter", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "provider": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
        "name": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        # One of the registered adapters' names (filled in by `_file_validator`).
        "adapter": {"type": "string"},
        # Runs of this provider at once, across the fleet (e.g. an Apify account's
        # concurrent actor runs); the PROVIDER_CONCURRENCY setting overrides it.
        "maxConcurrent": {"type": "integer", "minimum": 1},
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["path", "name", "description", "inputSchema", "price"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "pattern": "^(/[A-Za-z0-9._~-]+)+$"},
                    "name": {"type": "string", "minLength": 1},
                    "description": {"type": "string", "minLength": 1},
                    "tags": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "inputSchema": {"type": "object"},
                    "queryParamsSchema": {"type": "object"},
                    "pathParamsSchema": {"type": "object"},
                    "price": _PRICE_SCHEMA,
                    "deadlineSeconds": {"type": "integer", "minimum": 1, "maximum": 86400},
                    "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 20},
                    # Runs of this endpoint at once, across the fleet.
                    "maxConcurrent": {"type": "integer", "minimum": 1},
                    "call": {"type": "object"},
                    # A realistic input that passes the endpoint's schemas, for its card.
                    "exampleInput": {"type": "object"},
                },
            },
        },
    },
}


@lru_cache(maxsize=1)
def _file_validator(adapters: tuple[str, ...]) -> Any:
    schema = {**FILE_SCHEMA, "properties": {**FILE_SCHEMA["properties"],
                                            "adapter": {"enum": list(adapters)}}}
    return Validator(schema)


@lru_cache(maxsize=16)
def _call_validator(kind: AdapterKind) -> Any:
    return Validator(kind.call_schema)


def _call_problems(kind: AdapterKind, raw: Mapping[str, Any], where: str) -> list[str]:
    call = raw.get("call", {})
    problems = [
        f"{where}: call/{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in _call_validator(kind).iter_errors(call)
    ]
    if kind.check_call is not None and not problems:
        problems += [f"{where}: {problem}" for problem in kind.check_call(call, raw)]
    return problems


DEFAULT_DEADLINE_SECONDS = 900
DEFAULT_MAX_ATTEMPTS = 5


class _ExactFloat(float):
    """A float that remembers the text it was read from, so prices stay exact."""

    text: str


def _float_keeping_text(text: str) -> float:
    value = _ExactFloat(text)
    value.text = text
    return value


def _exact(value: Any) -> Any:
    return Decimal(value.text) if isinstance(value, _ExactFloat) else value


class CatalogError(Exception):
    """The catalog files are broken; the message lists every problem."""


@dataclass(frozen=True)
class Price:
    type: str
    amount_micros: int
    flat_fee_micros: int | None = None
    max_results: int | None = None
    max_results_input: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: its card (what callers see), and how it is run. Read back from the
    catalog table (`shared.store.catalog`) it has its card only: the table does not keep
    the adapter's `call`, the price's `maxResultsInput`, nor `maxConcurrent`."""

    provider: str
    provider_name: str
    path: str
    name: str
    description: str
    tags: tuple[str, ...]
    input_schema: Mapping[str, Any]
    query_params_schema: Mapping[str, Any] | None
    path_params_schema: Mapping[str, Any] | None
    price: Price
    deadline_seconds: int
    max_attempts: int
    adapter: str
    call: Mapping[str, Any] = field(default_factory=dict)
    example_input: Mapping[str, Any] | None = None
    max_concurrent: int | None = None

    @cached_property
    def validators(self) -> Mapping[str, Any]:
        """A validator of each part of the input the endpoint takes (its body, and its
        query and path parameters where it has them)."""
        schemas = {"body": self.input_schema, "queryParams": self.query_params_schema,
                   "pathParams": self.path_params_schema}
        return {part: Validator(s) for part, s in schemas.items() if s is not None}


@dataclass(frozen=True)
class Catalog:
    endpoints: Mapping[tuple[str, str], Endpoint]
    provider_names: Mapping[str, str]
    # The providers' own concurrency limits (maxConcurrent), where they have one.
    provider_limits: Mapping[str, int] = field(default_factory=dict)

    def find(self, provider: str, path: str) -> Endpoint | None:
        return self.endpoints.get((provider, path))

    def all(self) -> list[Endpoint]:
        return sorted(self.endpoints.values(), key=lambda e: (e.provider, e.path))

    def not_found_message(self, provider: str, path: str) -> str:
        """Why (provider, path) names no endpoint, for the caller: an unknown provider
        or an unknown endpoint of a known one, with the closest name there is."""
        see = "See GET /v1/endpoints for every provider and endpoint."
        if provider not in self.provider_names:
            return (f"unknown provider {provider!r} (asked for endpoint {path!r})"
                    f"{_did_you_mean(provider, self.provider_names)} {see}")
        paths = [p for (name, p) in self.endpoints if name == provider]
        return f"provider {provider!r} has no endpoint {path!r}{_did_you_mean(path, paths)} {see}"


def _did_you_mean(given: str, known: Iterable[str]) -> str:
    known = list(known)
    same_but_case = [k for k in known if k.lower() == given.lower()]
    close = same_but_case or difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else "."


def _schema_problems(schema: Any, where: str) -> list[str]:
    message = _schema_error(json.dumps(schema, sort_keys=True))
    return [f"{where}: not a valid JSON Schema: {message}"] if message else []


@lru_cache(maxsize=1024)
def _schema_error(text: str) -> str | None:
    """Why the JSON Schema of this text is not one (None: it is). Checking a schema
    against the metaschema is most of a catalog's load: the schemas come from JSON, so
    their text stands for them, and each is checked once a process, however often the
    same catalog is loaded."""
    try:
        Draft202012Validator.check_schema(json.loads(text))
    except SchemaError as exc:
        return exc.message
    return None


def _price(raw: Mapping[str, Any], where: str, problems: list[str]) -> Price:
    try:
        amount = dollars_to_micros(_exact(raw["amount"]))
        flat_fee = dollars_to_micros(_exact(raw["flatFee"])) if "flatFee" in raw else None
    except ValueError as exc:
        problems.append(f"{where}.price: {exc}")
        return Price(raw["type"], 0)
    if amount < 0 or (flat_fee or 0) < 0:
        problems.append(f"{where}.price: amounts must not be negative")
    if raw["type"] == "PER_CALL" and ({"flatFee", "maxResults", "maxResultsInput"} & set(raw)):
        problems.append(f"{where}.price: flatFee and maxResults are for PER_RESULT only")
    if raw["type"] == "PER_RESULT" and "maxResults" not in raw:
        problems.append(f"{where}.price: PER_RESULT needs maxResults (the most it can charge)")
    return Price(raw["type"], amount, flat_fee, raw.get("maxResults"),
                 raw.get("maxResultsInput"))


def _load_file(path: Path, problems: list[str], kinds: Mapping[str, AdapterKind],
               provider_limits: dict[str, int] | None = None) -> list[Endpoint]:
    try:
        data = json.loads(path.read_text(), parse_float=_float_keeping_text)
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: cannot be read: {exc}")
        return []
    except json.JSONDecodeError as exc:
        problems.append(f"{path.name}: not valid JSON: {exc}")
        return []
    errors = sorted(_file_validator(tuple(kinds)).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        for error in errors:
            location = "/".join(str(p) for p in error.absolute_path) or "(top)"
            problems.append(f"{path.name}: {location}: {error.message}")
        return []
    if provider_limits is not None and "maxConcurrent" in data:
        provider_limits[data["provider"]] = data["maxConcurrent"]
    endpoints = []
    for index, raw in enumerate(data["endpoints"]):
        where = f"{path.name}: endpoints/{index} ({raw['path']})"
        schemas = {"body": raw["inputSchema"]}
        for part, key in (("queryParams", "queryParamsSchema"), ("pathParams", "pathParamsSchema")):
            if key in raw:
                schemas[part] = raw[key]
        bad = [p for part, s in schemas.items() for p in _schema_problems(s, f"{where} {part}")]
        bad += _call_problems(kinds[data["adapter"]], raw, where)
        problems.extend(bad)
        price = _price(raw["price"], where, problems)
        if bad:
            continue
        endpoints.append(
            Endpoint(
                provider=data["provider"],
                provider_name=data["name"],
                path=raw["path"],
                name=raw["name"],
                description=raw["description"],
                tags=tuple(raw.get("tags", ())),
                input_schema=raw["inputSchema"],
                query_params_schema=raw.get("queryParamsSchema"),
                path_params_schema=raw.get("pathParamsSchema"),
                price=price,
                deadline_seconds=raw.get("deadlineSeconds", DEFAULT_DEADLINE_SECONDS),
                max_attempts=raw.get("maxAttempts", DEFAULT_MAX_ATTEMPTS),
                adapter=data["adapter"],
                call=raw.get("call", {}),
                example_input=raw.get("exampleInput"),
                max_concurrent=raw.get("maxConcurrent"),
            )
        )
        example = endpoints[-1].example_input
        if example is not None:
            problems.extend(f"{where}: exampleInput: {at}: {'; '.join(messages)}"
                            for at, messages in validate_input(endpoints[-1], example).items())
    return endpoints


def load_catalog(directory: Path) -> Catalog:
    """Load and validate every `*.json` file of `directory`."""
    problems: list[str] = []
    try:
        kinds = adapter_kinds()
    except AdaptersMissing as exc:
        raise CatalogError(str(exc)) from None
    files = sorted(directory.glob("*.json"))
    if not files:
        raise CatalogError(f"catalog {directory} has no *.json files")
    endpoints: dict[tuple[str, str], Endpoint] = {}
    provider_names: dict[str, str] = {}
    provider_limits: dict[str, int] = {}
    for path in files:
        for endpoint in _load_file(path, problems, kinds, provider_limits):
            key = (endpoint.provider, endpoint.path)
            if key in endpoints:
                problems.append(f"{path.name}: endpoint {endpoint.provider} {endpoint.path} "
                                "is declared twice")
            known_name = provider_names.get(endpoint.provider, endpoint.provider_name)
            if known_name != endpoint.provider_name:
                problems.append(f"{path.name}: provider {endpoint.provider} is declared twice")
            endpoints[key] = endpoint
            provider_names[endpoint.provider] = endpoint.provider_name
    if problems:
        raise CatalogError(f"catalog {directory} is broken: " + "; ".join(problems))
    return Catalog(endpoints=endpoints, provider_names=provider_names,
                   provider_limits=provider_limits)


def is_composite(value: Mapping[str, Any]) -> bool:
    """Composite input: non-empty, every key a part name with an object value."""
    return bool(value) and all(
        key in COMPOSITE_PARTS and isinstance(part, dict) for key, part in value.items()
    )


def split_input(value: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Input in its composite form: body, queryParams and pathParams (each an object)."""
    if is_composite(value):
        return {part: dict(value.get(part, {})) for part in COMPOSITE_PARTS}
    return {"body": dict(value), "queryParams": {}, "pathParams": {}}


def _message(error: ValidationError) -> str:
    keyword = str(error.validator)
    value = error.validator_value
    bounds = {
        "minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<",
    }
    counts = {
        "minLength": "at least {} characters long", "maxLength": "at most {} characters long",
        "minItems": "must have at least {} items", "maxItems": "must have at most {} items",
        "minProperties": "must have at least {} properties",
        "maxProperties": "must have at most {} properties",
    }
    if keyword in bounds:
        return f"must be {bounds[keyword]} {value}"
    if keyword in counts:
        text = counts[keyword].format(value)
        return text if text.startswith("must") else f"must be {text}"
    if keyword == "type":
        names = value if isinstance(value, list) else [value]
        return "must be of type " + " or ".join(str(n) for n in names)
    if keyword == "enum" and isinstance(value, list):
        return "must be one of " + ", ".join(json.dumps(v, default=str) for v in value)
    if keyword == "const":
        return f"must be {json.dumps(value, default=str)}"
    if keyword == "pattern":
        return f"must match the pattern {value}"
    if keyword == "format":
        return f"must be a valid {value}"
    if keyword == "uniqueItems":
        return "must not contain duplicates"
    if keyword == "multipleOf":
        return f"must be a multiple of {value}"
    return error.message


def _field_errors(error: ValidationError, prefix: str) -> list[tuple[str, str]]:
    base = ".".join([prefix, *(str(p) for p in error.absolute_path)])
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        return [(f"{base}.{name}", "is required")
                for name in error.validator_value if name not in instance]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in instance if k not in known
                 and not any(ecma_pattern(p).search(k) for p in patterns)]
        return [(f"{base}.{name}", "is not allowed") for name in extra] or [(base, error.message)]
    return [(base, _message(error))]


def validate_input(endpoint: Endpoint, value: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every failing field of `value` against the endpoint's schemas, by path."""
    composite = is_composite(value)
    parts = split_input(value)
    errors: dict[str, list[str]] = {}
    for part, data in parts.items():
        validator = endpoint.validators.get(part)
        if validator is None:
            if data:
                errors.setdefault(f"input.{part}", []).append("this endpoint takes no " + part)
            continue
        prefix = "input" if part == "body" and not composite else f"input.{part}"
        for error in validator.iter_errors(data):
            for path, message in _field_errors(error, prefix):
                bucket = errors.setdefault(path, [])
                if message not in bucket:
                    bucket.append(message)
    for path, message in _cap_problems(endpoint, value, composite):
        errors.setdefault(path, [message])
    for name, given in parts["pathParams"].items():
        if isinstance(given, (str, int, float)) and str(given) in BAD_PATH_PARAMS:
            errors.setdefault(f"input.pathParams.{name}", []).append(
                "must not be empty, '.' or '..'")
    return dict(sorted(errors.items()))


def _cap_problems(endpoint: Endpoint, value: Mapping[str, Any],
                  composite: bool) -> list[tuple[str, str]]:
    """An input asking for more results than the endpoint delivers and charges for
    (its price's maxResults, where the input names its own cap) is refused."""
    price = endpoint.price
    if not price.max_results_input or price.max_results is None:
        return []
    part, _, name = price.max_results_input.partition(".")
    given = split_input(value)[part].get(name)
    if isinstance(given, int) and not isinstance(given, bool) and given > price.max_results:
        prefix = "input" if part == "body" and not composite else f"input.{part}"
        return [(f"{prefix}.{name}", f"must be <= {price.max_results}: the most results this "
                                     "endpoint delivers and charges for")]
    return []


def hold_for(endpoint: Endpoint, value: Mapping[str, Any]) -> tuple[int, int | None]:
    """What a run of `endpoint` with this input holds on the wallet, and the most
    results it can be charged for: PER_CALL its amount; PER_RESULT its maximum
    charge, with the input's own cap where the endpoint names one."""
    price = endpoint.price
    if price.type == "PER_CALL":
        return price.amount_micros, None
    cap = price.max_results
    if price.max_results_input:
        part, _, name = price.max_results_input.partition(".")
        given = split_input(value)[part].get(name)
        if isinstance(given, int) and not isinstance(given, bool) and given >= 0:
            cap = given if cap is None else min(cap, given)
    return (price.flat_fee_micros or 0) + price.amount_micros * (cap or 0), cap
