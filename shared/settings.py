"""Settings: the only code that reads the environment.

`load_settings()` reads every variable once into a frozen `Settings`; a
missing or malformed value raises `SettingsError` naming the variable, and
`load_settings_or_exit()` turns that into one line on stderr and exit code 2.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_CATALOG_DIR = Path(__file__).parent / "catalog"


class SettingsError(Exception):
    """A variable of the environment is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    port: int
    web_concurrency: int
    web_threads: int
    worker_concurrency: int
    # Worker processes the `worker` process of the Procfile runs, each with its
    # WORKER_CONCURRENCY threads (one Python process keeps to one core).
    worker_processes: int
    # Whether each worker process keeps to a core of its own when there is one a core
    # (WORKER_PROCESSES equal to the cores the process may use): for cores that are the
    # worker's own.
    worker_cpu_affinity: bool
    # Whether workers send task events (Flower switches them on while it watches).
    worker_task_events: bool
    # While a worker process is busy, how long a thread that is to write its claim
    # or end waits for others' to write with (shared/grouping.py), in milliseconds.
    worker_group_linger_ms: float
    db_pool_size: int
    max_body_bytes: int
    catalog_dir: Path
    log_level: str
    lease_seconds: int
    retry_base_seconds: float
    retry_max_seconds: float
    task_visibility_timeout: int
    worker_db_pool_size: int
    apify_api_base_url: str
    apify_token: str = field(repr=False)
    provider_max_response_bytes: int
    long_wait_seconds: float
    sweeper_enabled: bool
    sweep_interval_seconds: float
    sweep_grace_seconds: float
    max_lost_attempts: int
    worker_pool: str
    worker_shutdown_grace_seconds: float
    db_pool_timeout_seconds: float
    rate_limit_per_minute: int
    max_runs_in_flight: int
    # How long a run may wait to start before it ends TIMED_OUT (QUEUE_TIMEOUT).
    queue_timeout_seconds: int
    # Threads of one worker process that one caller's runs may hold at once (0: none).
    caller_concurrency: int
    # How long a run over it waits in its worker process for one of those threads
    # before it is parked in PostgreSQL (0: parked at once).
    caller_wait_seconds: float
    # Concurrency limits of providers ("apify") and endpoints ("apify/path"), over
    # the catalog's own maxConcurrent.
    provider_concurrency: Mapping[str, int]
    # How long a web process reuses an API key it read: a revoked key is refused
    # within this long.
    api_key_cache_seconds: float
    # Every variable of the environment, for catalog entries that name the one
    # holding their secret (or base URL). Never logged.
    provider_env: Mapping[str, str] = field(repr=False)
    # How long a web process reuses what /metrics read from PostgreSQL and Redis.
    metrics_cache_seconds: float = 5.0
    # How often a web process writes when its keys were last used (`shared.keyuse`).
    api_key_last_used_flush_seconds: float = 60.0
    # Requests a minute to /public/v1 from one client address (0: no limit).
    public_rate_limit_per_minute: int = 60
    # Where gunicorn's workers keep their metrics for /metrics to add up; None
    # outside gunicorn (one process, one plain registry).
    metrics_multiproc_dir: Path | None = None
    # The bound on every run's result: its items' total size (compact JSON) and
    # their number. Past either, the run ends FAILED with RESPONSE_TOO_LARGE.
    max_result_bytes: int = 32 * 1024 * 1024
    max_result_items: int = 100_000
    # A run's `output` holds its whole result up to this size; past it, the first
    # items that fit, and the run says its output is truncated.
    max_inline_output_bytes: int = 256 * 1024
    # What an MCP tool answers inline at most (a run's output, a page of its items), so
    # that a big result does not flood an agent's context; the rest is paged.
    mcp_inline_output_bytes: int = 20 * 1024
    # How a rediss:// REDIS_URL's certificate is checked: "required" (verified against
    # the system's CAs, or REDIS_SSL_CA_CERTS), "optional" or "none" (not checked: for
    # managed Redis whose certificate is self-signed).
    redis_ssl_cert_reqs: str = "required"
    redis_ssl_ca_certs: Path | None = None
    # Webhooks may go to plain http and to private, loopback or link-local addresses
    # (local development and tests only): outbound calls are https to public ones.
    webhooks_allow_insecure: bool = False
    # How long a rotated signing secret keeps signing beside the new one.
    webhook_secret_grace_seconds: int = 86400
    # The most standing webhooks a workspace may have.
    max_webhooks_per_workspace: int = 20
    # Live event streams of runs (GET /v1/runs/:runId/events), in each web process: how
    # many may be open at once (out of the threads ?wait may hold) and how many of one
    # caller's; how long one stays open before the client is asked to reconnect; how
    # often an idle stream sends a keep-alive comment.
    event_streams_per_process: int = 28
    event_streams_per_caller: int = 5
    event_stream_max_seconds: float = 300.0
    event_stream_ping_seconds: float = 15.0
    # The waits (seconds) after each failed try of a webhook delivery; past the last,
    # the delivery is FAILED. Each wait is jittered by up to a fifth either way.
    webhook_retry_schedule: tuple[float, ...] = (5, 30, 120, 600, 1800, 7200, 21600, 43200)
    # The whole of one try: connecting, sending, and the answer's status and first bytes.
    webhook_timeout_seconds: float = 5.0
    # Webhook tries one worker process sends at once (default: half its threads), so that
    # receivers that hang cannot hold every thread while runs wait.
    webhook_max_in_flight: int = 100


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(name, f"is not set: expected a {schemes[0]}:// URL")
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise SettingsError(
            name, f"is malformed: expected a URL starting with {' or '.join(schemes)}://"
        )
    if not parts.hostname and not parts.path and "host=" not in parts.query:
        raise SettingsError(name, "is malformed: the URL names no host")
    if "," not in parts.netloc:  # several hosts (libpq) carry several ports
        try:
            parts.port  # noqa: B018 - reading it validates it
        except ValueError:
            raise SettingsError(name, "is malformed: the port is not a number") from None
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"is malformed: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(name, f"is out of range: {value} is not within {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"is malformed: {raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(name, f"is out of range: {value} is not within {low}..{high}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(name, f"is malformed: use one of {', '.join(choices)}")
    return raw


def _file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not Path(raw).is_file():
        raise SettingsError(name, f"is malformed: {raw!r} is not a file")
    return Path(raw)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(name, f"is malformed: {raw!r} is not true or false")


_SLOT_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}(/[A-Za-z0-9._~-]+)*")


def _limits(env: Mapping[str, str], name: str) -> dict[str, int]:
    """`provider=N,provider/endpoint/path=N`: positive whole numbers by provider or
    endpoint."""
    limits: dict[str, int] = {}
    for entry in filter(None, (e.strip() for e in env.get(name, "").split(","))):
        key, sep, raw = (part.strip() for part in entry.partition("="))
        if not sep or not _SLOT_KEY.fullmatch(key):
            raise SettingsError(name, f"is malformed: {entry!r} is not provider=N or "
                                "provider/endpoint/path=N")
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1 or str(value) != raw.lstrip("+"):
            raise SettingsError(name, f"is malformed: the limit of {key} ({raw!r}) is not a "
                                "positive whole number")
        if key in limits:
            raise SettingsError(name, f"is malformed: {key} is given twice")
        limits[key] = value
    return limits


def _schedule(env: Mapping[str, str], name: str,
              default: tuple[float, ...]) -> tuple[float, ...]:
    """`5,30,120`: one to 30 waits in seconds, each more than 0 and at most a week."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    waits = []
    for entry in (e.strip() for e in raw.split(",")):
        try:
            wait = float(entry)
        except ValueError:
            wait = math.nan
        if not (0 < wait <= 7 * 86400):
            raise SettingsError(name, f"is malformed: {entry!r} is not a wait in seconds "
                                "(more than 0, at most 604800); expected e.g. 5,30,120")
        waits.append(wait)
    if len(waits) > 30:
        raise SettingsError(name, f"is malformed: {len(waits)} waits; at most 30")
    return tuple(waits)


def allowed_cores() -> list[int]:
    """The cores this process may run on, in order; none where the platform does not
    say (no sched_getaffinity)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return []


def available_cores() -> int:
    """How many cores this process may run on (not the host's count, where it is
    limited)."""
    return max(1, len(allowed_cores()) or os.cpu_count() or 1)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    database_url = _url(env, "DATABASE_URL", ("postgresql", "postgres"))
    redis_url = _url(env, "REDIS_URL", ("redis", "rediss", "unix"))
    worker_concurrency = _int(env, "WORKER_CONCURRENCY", 200, 1, 10_000)
    web_threads = _int(env, "WEB_THREADS", 64, 1, 1024)
    worker_processes = _int(env, "WORKER_PROCESSES", available_cores(), 1, 256)
    catalog_dir = load_catalog_dir(env)
    log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
    # prometheus_client reads this variable too: under this name or no other.
    multiproc_raw = env.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("LOG_LEVEL", "is malformed: use DEBUG, INFO, WARNING or ERROR")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        port=_int(env, "PORT", 8000, 1, 65535),
        web_concurrency=_int(env, "WEB_CONCURRENCY", 2, 1, 256),
        web_threads=web_threads,
        worker_concurrency=worker_concurrency,
        worker_processes=worker_processes,
        worker_cpu_affinity=_bool(env, "WORKER_CPU_AFFINITY", False),
        worker_task_events=_bool(env, "WORKER_TASK_EVENTS", False),
        worker_group_linger_ms=_float(env, "WORKER_GROUP_LINGER_MS", 20.0, 0.0, 1000.0),
        db_pool_size=_int(env, "DB_POOL_SIZE", 10, 1, 1000),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 256 * 1024, 1024, 64 * 1024 * 1024),
        catalog_dir=catalog_dir,
        log_level=log_level,
        lease_seconds=_int(env, "LEASE_SECONDS", 60, 1, 3600),
        retry_base_seconds=_float(env, "RETRY_BASE_SECONDS", 1.0, 0.0, 3600.0),
        retry_max_seconds=_float(env, "RETRY_MAX_SECONDS", 60.0, 0.0, 86400.0),
        task_visibility_timeout=_int(env, "TASK_VISIBILITY_TIMEOUT", 3600, 60, 7 * 86400),
        worker_db_pool_size=_int(env, "WORKER_DB_POOL_SIZE", min(worker_concurrency, 20), 1,
                                 1000),
        apify_api_base_url=_url(env, "APIFY_API_BASE_URL", ("https", "http"))
        if env.get("APIFY_API_BASE_URL", "").strip() else "https://api.apify.com",
        apify_token=env.get("APIFY_TOKEN", "").strip(),
        provider_max_response_bytes=_int(env, "PROVIDER_MAX_RESPONSE_BYTES", 50 * 1024 * 1024,
                                         1024, 1024 * 1024 * 1024),
        long_wait_seconds=_float(env, "LONG_WAIT_SECONDS", 60.0, 1.0, 86400.0),
        provider_env=dict(env),
        sweeper_enabled=_bool(env, "SWEEPER_ENABLED", True),
        sweep_interval_seconds=_float(env, "SWEEP_INTERVAL_SECONDS", 5.0, 0.1, 600.0),
        sweep_grace_seconds=_float(env, "SWEEP_GRACE_SECONDS", 30.0, 0.1, 86400.0),
        max_lost_attempts=_int(env, "MAX_LOST_ATTEMPTS", 3, 1, 100),
        worker_pool=_choice(env, "WORKER_POOL", "threads", ("threads", "prefork")),
        worker_shutdown_grace_seconds=_float(env, "WORKER_SHUTDOWN_GRACE_SECONDS", 25.0, 0.0,
                                             3600.0),
        db_pool_timeout_seconds=_float(env, "DB_POOL_TIMEOUT_SECONDS", 2.0, 0.1, 60.0),
        rate_limit_per_minute=_int(env, "RATE_LIMIT_PER_MINUTE", 1200, 0, 10_000_000),
        max_runs_in_flight=_int(env, "MAX_RUNS_IN_FLIGHT", 1000, 0, 10_000_000),
        queue_timeout_seconds=_int(env, "QUEUE_TIMEOUT_SECONDS", 900, 1, 7 * 86400),
        caller_concurrency=_int(env, "CALLER_CONCURRENCY", max(1, worker_concurrency // 2), 0,
                                1_000_000),
        caller_wait_seconds=_float(env, "CALLER_WAIT_SECONDS", 1.0, 0.0, 60.0),
        provider_concurrency=_limits(env, "PROVIDER_CONCURRENCY"),
        api_key_cache_seconds=_float(env, "API_KEY_CACHE_SECONDS", 2.0, 0.0, 300.0),
        metrics_cache_seconds=_float(env, "METRICS_CACHE_SECONDS", 5.0, 0.0, 300.0),
        api_key_last_used_flush_seconds=_float(env, "API_KEY_LAST_USED_FLUSH_SECONDS", 60.0,
                                               0.0, 86400.0),
        public_rate_limit_per_minute=_int(env, "PUBLIC_RATE_LIMIT_PER_MINUTE", 60, 0,
                                          10_000_000),
        metrics_multiproc_dir=Path(multiproc_raw) if multiproc_raw else None,
        max_result_bytes=_int(env, "MAX_RESULT_BYTES", 32 * 1024 * 1024, 1024,
                              1024 * 1024 * 1024),
        max_result_items=_int(env, "MAX_RESULT_ITEMS", 100_000, 1, 10_000_000),
        max_inline_output_bytes=_int(env, "MAX_INLINE_OUTPUT_BYTES", 256 * 1024, 0,
                                     16 * 1024 * 1024),
        mcp_inline_output_bytes=_int(env, "MCP_INLINE_OUTPUT_BYTES", 20 * 1024, 1024,
                                     4 * 1024 * 1024),
        redis_ssl_cert_reqs=_choice(env, "REDIS_SSL_CERT_REQS", "required",
                                    ("none", "optional", "required")),
        redis_ssl_ca_certs=_file(env, "REDIS_SSL_CA_CERTS"),
        webhooks_allow_insecure=_bool(env, "WEBHOOKS_ALLOW_INSECURE", False),
        webhook_secret_grace_seconds=_int(env, "WEBHOOK_SECRET_GRACE_SECONDS", 86400, 0,
                                          30 * 86400),
        max_webhooks_per_workspace=_int(env, "MAX_WEBHOOKS_PER_WORKSPACE", 20, 1, 1000),
        event_streams_per_process=_int(env, "EVENT_STREAMS_PER_PROCESS",
                                       max(1, (web_threads - 8) // 2), 0, 1024),
        event_streams_per_caller=_int(env, "EVENT_STREAMS_PER_CALLER", 5, 0, 1024),
        event_stream_max_seconds=_float(env, "EVENT_STREAM_MAX_SECONDS", 300.0, 1.0, 86400.0),
        event_stream_ping_seconds=_float(env, "EVENT_STREAM_PING_SECONDS", 15.0, 0.1, 300.0),
        webhook_retry_schedule=_schedule(env, "WEBHOOK_RETRY_SCHEDULE",
                                         (5, 30, 120, 600, 1800, 7200, 21600, 43200)),
        webhook_timeout_seconds=_float(env, "WEBHOOK_TIMEOUT_SECONDS", 5.0, 0.1, 60.0),
        webhook_max_in_flight=_int(env, "WEBHOOK_MAX_IN_FLIGHT",
                                   max(1, worker_concurrency // 2), 1, 10_000),
    )


@dataclass(frozen=True)
class FlowerSettings:
    """What Flower needs: the broker, and how it is locked. Flower reads its own
    options (FLOWER_BASIC_AUTH, FLOWER_AUTH, ...) itself; they are checked here so that
    it never starts open by mistake."""

    redis_url: str
    redis_ssl_cert_reqs: str
    redis_ssl_ca_certs: Path | None
    port: int
    address: str
    basic_auth: str = field(repr=False)
    oauth: bool
    unauthenticated: bool

    @property
    def authenticated(self) -> bool:
        return bool(self.basic_auth) or self.oauth


OAUTH_VARIABLES = ("FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET", "FLOWER_OAUTH2_REDIRECT_URI")


def load_flower_settings(env: Mapping[str, str] | None = None) -> FlowerSettings:
    env = os.environ if env is None else env
    basic_auth = env.get("FLOWER_BASIC_AUTH", "").strip()
    for pair in basic_auth.split(",") if basic_auth else ():
        user, colon, password = pair.partition(":")
        if not (user.strip() and colon and password):
            raise SettingsError("FLOWER_BASIC_AUTH", "is malformed: expected user:password "
                                                     "(several separated by commas)")
    oauth = bool(env.get("FLOWER_AUTH", "").strip())
    if oauth:
        for name in OAUTH_VARIABLES:
            if not env.get(name, "").strip():
                raise SettingsError(name, "is not set: FLOWER_AUTH (OAuth) needs it")
    settings = FlowerSettings(
        redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
        redis_ssl_cert_reqs=_choice(env, "REDIS_SSL_CERT_REQS", "required",
                                    ("none", "optional", "required")),
        redis_ssl_ca_certs=_file(env, "REDIS_SSL_CA_CERTS"),
        port=_int(env, "FLOWER_PORT", 5555, 1, 65535),
        address=env.get("FLOWER_ADDRESS", "").strip() or "127.0.0.1",
        basic_auth=basic_auth,
        oauth=oauth,
        unauthenticated=_bool(env, "FLOWER_UNAUTHENTICATED", False),
    )
    if not settings.authenticated and not settings.unauthenticated:
        raise SettingsError("FLOWER_BASIC_AUTH", "is not set: Flower shows every caller's runs "
                            "and can stop workers, so it does not start without a login (set "
                            "FLOWER_BASIC_AUTH=user:password, or FLOWER_AUTH for OAuth, or "
                            "FLOWER_UNAUTHENTICATED=true where nobody else can reach it)")
    return settings


def load_flower_settings_or_exit(env: Mapping[str, str] | None = None) -> FlowerSettings:
    try:
        return load_flower_settings(env)
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def load_database_url(env: Mapping[str, str] | None = None) -> str | None:
    """DATABASE_URL alone (validated), or None when it is unset: for commands that
    need only the database."""
    env = os.environ if env is None else env
    if not env.get("DATABASE_URL", "").strip():
        return None
    return _url(env, "DATABASE_URL", ("postgresql", "postgres"))


@dataclass(frozen=True)
class AgentClientSettings:
    """What `monidctl mcp` needs: the server it talks to and the key it talks with (the
    names monid's own command-line client reads)."""

    base_url: str
    api_key: str = field(repr=False)


def load_agent_client_settings(env: Mapping[str, str] | None = None) -> AgentClientSettings:
    env = os.environ if env is None else env
    key = env.get("MONID_API_KEY", "").strip()
    if not key:
        raise SettingsError("MONID_API_KEY", "is not set: expected an API key (monid_live_... "
                            "or monid_test_..., from `monidctl keys create`)")
    if not env.get("MONID_API_BASE_URL", "").strip():
        return AgentClientSettings("http://localhost:8000", key)
    return AgentClientSettings(_url(env, "MONID_API_BASE_URL", ("http", "https")).rstrip("/"),
                               key)


def load_local_ports(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """PORT and FLOWER_PORT alone (checked), for `monidctl up` to look at before it
    starts anything."""
    env = os.environ if env is None else env
    return _int(env, "PORT", 8000, 1, 65535), _int(env, "FLOWER_PORT", 5555, 1, 65535)


def load_catalog_dir(env: Mapping[str, str] | None = None) -> Path:
    """CATALOG_DIR alone (checked), or the built-in catalog: for commands that need no
    other setting."""
    env = os.environ if env is None else env
    raw = env.get("CATALOG_DIR", "").strip()
    catalog_dir = Path(raw) if raw else DEFAULT_CATALOG_DIR
    if not catalog_dir.is_dir():
        raise SettingsError("CATALOG_DIR", f"is malformed: {str(catalog_dir)!r} is not a directory")
    return catalog_dir


def load_settings_or_exit(env: Mapping[str, str] | None = None) -> Settings:
    """Load settings; on error print one line naming the variable and exit 2."""
    try:
        return load_settings(env)
    except SettingsError as exc:
        print(f"monid: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
