"""load_settings / load_settings_or_exit: every variable read, checked and defaulted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.settings import (
    DEFAULT_CATALOG_DIR,
    Settings,
    SettingsError,
    load_flower_settings,
    load_settings,
    load_settings_or_exit,
)

DB = "postgresql://monid:pw@db.internal:5432/monid"
REDIS = "redis://cache.internal:6379/0"


def env(**overrides: str) -> dict[str, str]:
    base = {"DATABASE_URL": DB, "REDIS_URL": REDIS}
    base.update(overrides)
    return base


def without(name: str) -> dict[str, str]:
    values = env()
    del values[name]
    return values


# --- defaults and accepted values ---------------------------------------------


def test_defaults_with_only_the_two_urls() -> None:
    settings = load_settings(env())
    expected = {
        "database_url": DB,
        "redis_url": REDIS,
        "port": 8000,
        "web_concurrency": 2,
        "web_threads": 64,
        "worker_concurrency": 200,
        "db_pool_size": 10,
        "max_body_bytes": 256 * 1024,
        "catalog_dir": DEFAULT_CATALOG_DIR,
        "log_level": "INFO",
        "lease_seconds": 60,
        "retry_base_seconds": 1.0,
        "retry_max_seconds": 60.0,
        "task_visibility_timeout": 3600,
        "queue_timeout_seconds": 900,
        "caller_concurrency": 100,
        "caller_wait_seconds": 1.0,
        "provider_concurrency": {},
        "max_result_bytes": 32 * 1024 * 1024,
        "max_result_items": 100_000,
        "max_inline_output_bytes": 256 * 1024,
        "webhooks_allow_insecure": False,
    }
    actual = dataclasses.asdict(settings)
    assert {name: actual.get(name) for name in expected} == expected
    assert isinstance(settings, Settings)
    assert DEFAULT_CATALOG_DIR.is_dir()
    assert (DEFAULT_CATALOG_DIR / "demo.json").is_file()


def test_empty_values_fall_back_to_defaults() -> None:
    settings = load_settings(env(PORT="", WEB_CONCURRENCY="  ", LOG_LEVEL="", CATALOG_DIR=""))
    assert settings.port == 8000
    assert settings.web_concurrency == 2
    assert settings.log_level == "INFO"
    assert settings.catalog_dir == DEFAULT_CATALOG_DIR


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = load_settings(env(
        PORT="8080",
        WEB_CONCURRENCY="4",
        WEB_THREADS="16",
        WORKER_CONCURRENCY="32",
        DB_POOL_SIZE="20",
        MAX_BODY_BYTES="1048576",
        CATALOG_DIR=str(tmp_path),
        LOG_LEVEL="debug",
        LEASE_SECONDS="30",
        RETRY_BASE_SECONDS="0.25",
        RETRY_MAX_SECONDS="5",
        TASK_VISIBILITY_TIMEOUT="7200",
        MAX_RESULT_BYTES="1048576",
        MAX_RESULT_ITEMS="500",
        MAX_INLINE_OUTPUT_BYTES="0",
        WEBHOOKS_ALLOW_INSECURE="true",
    ))
    assert settings.port == 8080
    assert settings.web_concurrency == 4
    assert settings.web_threads == 16
    assert settings.worker_concurrency == 32
    assert settings.db_pool_size == 20
    assert settings.max_body_bytes == 1_048_576
    assert settings.catalog_dir == tmp_path
    assert settings.log_level == "DEBUG"
    assert settings.lease_seconds == 30
    assert settings.retry_base_seconds == 0.25
    assert settings.retry_max_seconds == 5.0
    assert settings.task_visibility_timeout == 7200
    assert settings.max_result_bytes == 1_048_576
    assert settings.max_result_items == 500
    assert settings.max_inline_output_bytes == 0
    assert settings.webhooks_allow_insecure is True


def test_values_are_stripped() -> None:
    settings = load_settings(env(PORT=" 9000 ", DATABASE_URL=f"  {DB}  ", LOG_LEVEL=" warning "))
    assert settings.port == 9000
    assert settings.database_url == DB
    assert settings.log_level == "WARNING"


@pytest.mark.parametrize("port", ["1", "65535"])
def test_port_bounds_are_inclusive(port: str) -> None:
    assert load_settings(env(PORT=port)).port == int(port)


@pytest.mark.parametrize("url", [
    "postgresql://db/monid",
    "postgres://user:pw@db:5432/monid",
    "postgresql:///monid",  # local socket, database named in the path
    "postgresql://?host=/var/run/postgresql",
])
def test_accepted_database_urls(url: str) -> None:
    assert load_settings(env(DATABASE_URL=url)).database_url == url


@pytest.mark.parametrize("url", [
    "redis://localhost:6379/0",
    "rediss://user:pw@cache:6380/1",
    "unix:///tmp/redis.sock",
])
def test_accepted_redis_urls(url: str) -> None:
    assert load_settings(env(REDIS_URL=url)).redis_url == url


def test_settings_are_frozen() -> None:
    settings = load_settings(env())
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-environ/db")
    monkeypatch.setenv("REDIS_URL", "redis://from-environ:6379/3")
    monkeypatch.setenv("PORT", "8123")
    settings = load_settings()
    assert settings.database_url == "postgresql://from-environ/db"
    assert settings.redis_url == "redis://from-environ:6379/3"
    assert settings.port == 8123


# --- errors name the variable ---------------------------------------------------


@pytest.mark.parametrize(("values", "variable", "fragment"), [
    (without("DATABASE_URL"), "DATABASE_URL", "is not set"),
    (env(DATABASE_URL=""), "DATABASE_URL", "is not set"),
    (env(DATABASE_URL="   "), "DATABASE_URL", "is not set"),
    (env(DATABASE_URL="mysql://db/monid"), "DATABASE_URL", "is malformed"),
    (env(DATABASE_URL="db.internal:5432"), "DATABASE_URL", "is malformed"),
    (env(DATABASE_URL="just some words"), "DATABASE_URL", "is malformed"),
    (env(DATABASE_URL="postgresql://"), "DATABASE_URL", "names no host"),
    (env(DATABASE_URL=REDIS), "DATABASE_URL", "is malformed"),
    (without("REDIS_URL"), "REDIS_URL", "is not set"),
    (env(REDIS_URL=""), "REDIS_URL", "is not set"),
    (env(REDIS_URL="http://cache:6379"), "REDIS_URL", "is malformed"),
    (env(REDIS_URL="redis://"), "REDIS_URL", "names no host"),
    (env(REDIS_URL=DB), "REDIS_URL", "is malformed"),
    (env(PORT="0"), "PORT", "is out of range"),
    (env(PORT="65536"), "PORT", "is out of range"),
    (env(PORT="-1"), "PORT", "is out of range"),
    (env(PORT="abc"), "PORT", "is not an integer"),
    (env(PORT="80.5"), "PORT", "is not an integer"),
    (env(PORT="8000x"), "PORT", "is not an integer"),
    (env(WEB_CONCURRENCY="0"), "WEB_CONCURRENCY", "is out of range"),
    (env(WEB_CONCURRENCY="257"), "WEB_CONCURRENCY", "is out of range"),
    (env(WEB_THREADS="0"), "WEB_THREADS", "is out of range"),
    (env(WEB_THREADS="1025"), "WEB_THREADS", "is out of range"),
    (env(WORKER_CONCURRENCY="0"), "WORKER_CONCURRENCY", "is out of range"),
    (env(WORKER_CONCURRENCY="many"), "WORKER_CONCURRENCY", "is not an integer"),
    (env(DB_POOL_SIZE="1001"), "DB_POOL_SIZE", "is out of range"),
    (env(API_KEY_CACHE_SECONDS="-1"), "API_KEY_CACHE_SECONDS", "is out of range"),
    (env(API_KEY_CACHE_SECONDS="a while"), "API_KEY_CACHE_SECONDS", "is not a number"),
    (env(MAX_BODY_BYTES="1023"), "MAX_BODY_BYTES", "is out of range"),
    (env(MAX_BODY_BYTES="256KiB"), "MAX_BODY_BYTES", "is not an integer"),
    (env(LEASE_SECONDS="0"), "LEASE_SECONDS", "is out of range"),
    (env(RETRY_BASE_SECONDS="fast"), "RETRY_BASE_SECONDS", "is not a number"),
    (env(RETRY_BASE_SECONDS="-0.1"), "RETRY_BASE_SECONDS", "is out of range"),
    (env(RETRY_BASE_SECONDS="nan"), "RETRY_BASE_SECONDS", "is out of range"),
    (env(RETRY_MAX_SECONDS="86401"), "RETRY_MAX_SECONDS", "is out of range"),
    (env(RETRY_MAX_SECONDS="inf"), "RETRY_MAX_SECONDS", "is out of range"),
    (env(TASK_VISIBILITY_TIMEOUT="59"), "TASK_VISIBILITY_TIMEOUT", "is out of range"),
    (env(LOG_LEVEL="VERBOSE"), "LOG_LEVEL", "is malformed"),
    (env(MAX_RESULT_BYTES="1023"), "MAX_RESULT_BYTES", "is out of range"),
    (env(MAX_RESULT_BYTES="32MB"), "MAX_RESULT_BYTES", "is not an integer"),
    (env(MAX_RESULT_ITEMS="0"), "MAX_RESULT_ITEMS", "is out of range"),
    (env(MAX_INLINE_OUTPUT_BYTES="-1"), "MAX_INLINE_OUTPUT_BYTES", "is out of range"),
    (env(CATALOG_DIR="/no/such/catalog/dir"), "CATALOG_DIR", "is not a directory"),
    (env(QUEUE_TIMEOUT_SECONDS="0"), "QUEUE_TIMEOUT_SECONDS", "is out of range"),
    (env(QUEUE_TIMEOUT_SECONDS="15m"), "QUEUE_TIMEOUT_SECONDS", "is not an integer"),
    (env(CALLER_CONCURRENCY="-1"), "CALLER_CONCURRENCY", "is out of range"),
    (env(CALLER_CONCURRENCY="half"), "CALLER_CONCURRENCY", "is not an integer"),
    (env(CALLER_WAIT_SECONDS="-1"), "CALLER_WAIT_SECONDS", "is out of range"),
    (env(CALLER_WAIT_SECONDS="soon"), "CALLER_WAIT_SECONDS", "is not a number"),
    (env(PROVIDER_CONCURRENCY="apify"), "PROVIDER_CONCURRENCY", "is not provider=N"),
    (env(PROVIDER_CONCURRENCY="apify=0"), "PROVIDER_CONCURRENCY", "not a positive whole"),
    (env(PROVIDER_CONCURRENCY="apify=-3"), "PROVIDER_CONCURRENCY", "not a positive whole"),
    (env(PROVIDER_CONCURRENCY="apify=2.5"), "PROVIDER_CONCURRENCY", "not a positive whole"),
    (env(PROVIDER_CONCURRENCY="apify=lots"), "PROVIDER_CONCURRENCY", "not a positive whole"),
    (env(PROVIDER_CONCURRENCY="Apify=3"), "PROVIDER_CONCURRENCY", "is not provider=N"),
    (env(PROVIDER_CONCURRENCY="apify=3,apify=4"), "PROVIDER_CONCURRENCY", "given twice"),
    (env(WEBHOOKS_ALLOW_INSECURE="maybe"), "WEBHOOKS_ALLOW_INSECURE", "is not true or false"),
    (env(WEBHOOK_RETRY_SCHEDULE="5,,30"), "WEBHOOK_RETRY_SCHEDULE", "'' is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="5,0"), "WEBHOOK_RETRY_SCHEDULE", "'0' is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="-5"), "WEBHOOK_RETRY_SCHEDULE", "'-5' is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="5s,30s"), "WEBHOOK_RETRY_SCHEDULE", "'5s' is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="nan"), "WEBHOOK_RETRY_SCHEDULE", "is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="inf"), "WEBHOOK_RETRY_SCHEDULE", "is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE="604801"), "WEBHOOK_RETRY_SCHEDULE", "is not a wait"),
    (env(WEBHOOK_RETRY_SCHEDULE=",".join(["1"] * 31)), "WEBHOOK_RETRY_SCHEDULE",
     "at most 30"),
    (env(WEBHOOK_TIMEOUT_SECONDS="0"), "WEBHOOK_TIMEOUT_SECONDS", "is out of range"),
    (env(WEBHOOK_TIMEOUT_SECONDS="61"), "WEBHOOK_TIMEOUT_SECONDS", "is out of range"),
    (env(WEBHOOK_TIMEOUT_SECONDS="soon"), "WEBHOOK_TIMEOUT_SECONDS", "is not a number"),
    (env(WEBHOOK_MAX_IN_FLIGHT="0"), "WEBHOOK_MAX_IN_FLIGHT", "is out of range"),
    (env(WEBHOOK_MAX_IN_FLIGHT="many"), "WEBHOOK_MAX_IN_FLIGHT", "is not an integer"),
])
def test_bad_values_raise_settings_error_naming_the_variable(
    values: dict[str, str], variable: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(values)
    assert caught.value.variable == variable
    assert fragment in caught.value.problem
    assert str(caught.value) == f"{variable} {caught.value.problem}"


def test_catalog_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    a_file = tmp_path / "catalog.json"
    a_file.write_text("{}")
    with pytest.raises(SettingsError) as caught:
        load_settings(env(CATALOG_DIR=str(a_file)))
    assert caught.value.variable == "CATALOG_DIR"
    assert str(a_file) in caught.value.problem


def test_out_of_range_message_gives_the_value_and_range() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env(PORT="70000"))
    assert caught.value.problem == "is out of range: 70000 is not within 1..65535"


def test_missing_database_url_is_reported_before_redis_url() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    assert caught.value.variable == "DATABASE_URL"


def test_a_malformed_url_is_not_echoed_with_its_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env(DATABASE_URL="mysql://admin:s3cr3t-pw@db/monid"))
    assert "s3cr3t-pw" not in str(caught.value)


def test_a_url_with_a_non_numeric_port_is_malformed() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env(DATABASE_URL="postgresql://db.internal:notaport/monid"))
    assert caught.value.variable == "DATABASE_URL"


# --- load_settings_or_exit --------------------------------------------------------


@pytest.mark.parametrize(("values", "variable"), [
    (without("DATABASE_URL"), "DATABASE_URL"),
    (without("REDIS_URL"), "REDIS_URL"),
    (env(PORT="99999"), "PORT"),
    (env(PORT="eighty"), "PORT"),
    (env(LOG_LEVEL="loud"), "LOG_LEVEL"),
    (env(RETRY_MAX_SECONDS="soon"), "RETRY_MAX_SECONDS"),
])
def test_or_exit_prints_one_line_and_exits_2(
    values: dict[str, str], variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        load_settings_or_exit(values)
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert captured.err.endswith("\n")
    assert variable in lines[0]
    assert lines[0].startswith("monid: configuration error: ")
    assert "Traceback" not in captured.err


def test_or_exit_does_not_leak_the_database_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings_or_exit(env(DATABASE_URL="mysql://admin:s3cr3t-pw@db/monid"))
    assert "s3cr3t-pw" not in capsys.readouterr().err


def test_or_exit_returns_settings_and_prints_nothing_when_valid(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings_or_exit(env(PORT="8081"))
    assert settings.port == 8081
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_or_exit_prints_one_line_even_for_a_path_with_a_newline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        load_settings_or_exit(env(CATALOG_DIR=str(tmp_path / "one\ntwo")))
    assert caught.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_concurrency_settings_are_read() -> None:
    settings = load_settings(env(WORKER_CONCURRENCY="50", QUEUE_TIMEOUT_SECONDS="60",
                                 PROVIDER_CONCURRENCY=" apify=25, demo/sleep=3 ,"))
    assert settings.caller_concurrency == 25  # half a worker's slots, by default
    assert settings.queue_timeout_seconds == 60
    assert settings.provider_concurrency == {"apify": 25, "demo/sleep": 3}
    assert load_settings(env(CALLER_CONCURRENCY="0")).caller_concurrency == 0
# --- Redis over TLS ---------------------------------------------------------------


def test_the_redis_certificate_is_verified_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_settings(env()).redis_ssl_cert_reqs == "required"
    assert load_settings(env()).redis_ssl_ca_certs is None
    for policy in ("none", "optional", "required", " NONE "):
        assert load_settings(env(REDIS_SSL_CERT_REQS=policy)).redis_ssl_cert_reqs == (
            policy.strip().lower())
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings(env(REDIS_SSL_CA_CERTS=str(ca))).redis_ssl_ca_certs == ca


@pytest.mark.parametrize(("values", "variable", "fragment"), [
    (env(REDIS_SSL_CERT_REQS="off"), "REDIS_SSL_CERT_REQS", "use one of none, optional, required"),
    (env(REDIS_SSL_CA_CERTS="/no/such/ca.pem"), "REDIS_SSL_CA_CERTS", "is not a file"),
])
def test_bad_tls_settings_name_the_variable(values: dict[str, str], variable: str,
                                            fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(values)
    assert caught.value.variable == variable and fragment in caught.value.problem


# --- Flower ------------------------------------------------------------------------


def flower_env(**overrides: str) -> dict[str, str]:
    return {"REDIS_URL": REDIS, **overrides}


def test_flower_needs_only_redis_and_a_login() -> None:
    settings = load_flower_settings(flower_env(FLOWER_BASIC_AUTH="ops:secret-word"))
    assert settings.redis_url == REDIS and settings.authenticated
    assert (settings.address, settings.port) == ("127.0.0.1", 5555)
    assert "secret-word" not in repr(settings)
    other = load_flower_settings(flower_env(FLOWER_BASIC_AUTH="a:b,c:d", FLOWER_PORT="6000",
                                            FLOWER_ADDRESS="0.0.0.0"))
    assert (other.address, other.port) == ("0.0.0.0", 6000)
    oauth = load_flower_settings(flower_env(
        FLOWER_AUTH=".*@example\\.com", FLOWER_OAUTH2_KEY="k", FLOWER_OAUTH2_SECRET="s",
        FLOWER_OAUTH2_REDIRECT_URI="https://flower.example.com/login"))
    assert oauth.authenticated and oauth.oauth
    open_one = load_flower_settings(flower_env(FLOWER_UNAUTHENTICATED="true"))
    assert not open_one.authenticated and open_one.unauthenticated


@pytest.mark.parametrize(("values", "variable", "fragment"), [
    (flower_env(), "FLOWER_BASIC_AUTH", "does not start without a login"),
    (flower_env(FLOWER_UNAUTHENTICATED="false"), "FLOWER_BASIC_AUTH", "without a login"),
    (flower_env(FLOWER_BASIC_AUTH="admin"), "FLOWER_BASIC_AUTH", "expected user:password"),
    (flower_env(FLOWER_BASIC_AUTH="admin:"), "FLOWER_BASIC_AUTH", "expected user:password"),
    (flower_env(FLOWER_BASIC_AUTH=":pw"), "FLOWER_BASIC_AUTH", "expected user:password"),
    (flower_env(FLOWER_AUTH=".*", FLOWER_OAUTH2_KEY="k"), "FLOWER_OAUTH2_SECRET",
     "FLOWER_AUTH (OAuth) needs it"),
    (flower_env(FLOWER_UNAUTHENTICATED="maybe"), "FLOWER_UNAUTHENTICATED", "not true or false"),
    (flower_env(FLOWER_BASIC_AUTH="a:b", FLOWER_PORT="0"), "FLOWER_PORT", "out of range"),
    ({"FLOWER_BASIC_AUTH": "a:b"}, "REDIS_URL", "is not set"),
])
def test_flower_refuses_to_start_open_or_misconfigured(values: dict[str, str], variable: str,
                                                       fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_flower_settings(values)
    assert caught.value.variable == variable and fragment in caught.value.problem


def test_worker_processes_default_to_the_cores_this_process_may_use() -> None:
    import os

    assert load_settings(env()).worker_processes == len(os.sched_getaffinity(0))
    assert load_settings(env(WORKER_PROCESSES="3")).worker_processes == 3
    assert load_settings(env()).worker_task_events is False
    assert load_settings(env(WORKER_TASK_EVENTS="true")).worker_task_events is True
    assert load_settings(env()).worker_cpu_affinity is False
    assert load_settings(env(WORKER_CPU_AFFINITY="true")).worker_cpu_affinity is True
    assert load_settings(env()).worker_group_linger_ms == 20.0
    assert load_settings(env(WORKER_GROUP_LINGER_MS="0")).worker_group_linger_ms == 0.0
    with pytest.raises(SettingsError):
        load_settings(env(WORKER_GROUP_LINGER_MS="-1"))
    with pytest.raises(SettingsError) as caught:
        load_settings(env(WORKER_PROCESSES="0"))
    assert caught.value.variable == "WORKER_PROCESSES"


def test_the_launcher_names_each_worker_process() -> None:
    from worker.launch import worker_argv

    settings = load_settings(env(WORKER_CONCURRENCY="50", LOG_LEVEL="warning"))
    argv = worker_argv(settings, 1, ["--max-tasks-per-child", "100"])
    assert argv[1:5] == ["-m", "celery", "--app", "worker.main"]
    assert argv[argv.index("--concurrency") + 1] == "50"
    assert argv[argv.index("--loglevel") + 1] == "WARNING"
    assert argv[argv.index("--hostname") + 1].startswith("worker2@")
    assert argv[-2:] == ["--max-tasks-per-child", "100"]


def test_event_streams_take_half_the_waiting_threads_by_default() -> None:
    settings = load_settings(env())
    assert (settings.event_streams_per_process, settings.event_streams_per_caller,
            settings.event_stream_max_seconds, settings.event_stream_ping_seconds) == (
        28, 5, 300.0, 15.0)
    assert load_settings(env(WEB_THREADS="256")).event_streams_per_process == 124
    assert load_settings(env(WEB_THREADS="4")).event_streams_per_process == 1
    chosen = load_settings(env(EVENT_STREAMS_PER_PROCESS="0", EVENT_STREAMS_PER_CALLER="2",
                               EVENT_STREAM_MAX_SECONDS="60", EVENT_STREAM_PING_SECONDS="0.5"))
    assert (chosen.event_streams_per_process, chosen.event_streams_per_caller,
            chosen.event_stream_max_seconds, chosen.event_stream_ping_seconds) == (0, 2, 60, 0.5)


@pytest.mark.parametrize(("values", "variable", "fragment"), [
    (env(EVENT_STREAMS_PER_PROCESS="-1"), "EVENT_STREAMS_PER_PROCESS", "is out of range"),
    (env(EVENT_STREAMS_PER_CALLER="many"), "EVENT_STREAMS_PER_CALLER", "is not an integer"),
    (env(EVENT_STREAM_MAX_SECONDS="0.5"), "EVENT_STREAM_MAX_SECONDS", "is out of range"),
    (env(EVENT_STREAM_PING_SECONDS="0"), "EVENT_STREAM_PING_SECONDS", "is out of range"),
    (env(EVENT_STREAM_PING_SECONDS="nan"), "EVENT_STREAM_PING_SECONDS", "is out of range"),
])
def test_bad_event_stream_settings_name_the_variable(values: dict[str, str], variable: str,
                                                     fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(values)
    assert caught.value.variable == variable and fragment in caught.value.problem


def test_the_webhook_retry_schedule_defaults_to_about_twenty_hours() -> None:
    settings = load_settings(env())
    assert settings.webhook_retry_schedule == (5, 30, 120, 600, 1800, 7200, 21600, 43200)
    assert 19 * 3600 < sum(settings.webhook_retry_schedule) < 21 * 3600
    assert settings.webhook_timeout_seconds == 5.0


def test_the_webhook_retry_schedule_is_read_in_order_with_spaces_and_fractions() -> None:
    settings = load_settings(env(WEBHOOK_RETRY_SCHEDULE=" 1, 2.5 ,4,604800",
                                 WEBHOOK_TIMEOUT_SECONDS="0.5"))
    assert settings.webhook_retry_schedule == (1.0, 2.5, 4.0, 604800.0)
    assert settings.webhook_timeout_seconds == 0.5


def test_webhook_tries_in_flight_default_to_half_the_threads() -> None:
    assert load_settings(env(WORKER_CONCURRENCY="200")).webhook_max_in_flight == 100
    assert load_settings(env(WORKER_CONCURRENCY="1")).webhook_max_in_flight == 1
    assert load_settings(env(WORKER_CONCURRENCY="8",
                             WEBHOOK_MAX_IN_FLIGHT="3")).webhook_max_in_flight == 3
