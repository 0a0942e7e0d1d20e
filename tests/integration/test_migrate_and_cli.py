"""`monidctl`: migrations (twice, concurrently), keys, catalog check."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import psycopg
import pytest
from flask.testing import FlaskClient

from shared.db import list_migrations, migrate
from tests.helpers import monidctl

ROOT = Path(__file__).resolve().parents[2]



def test_migrate_applies_everything_once_and_records_it(empty_database: str) -> None:
    applied = migrate(empty_database)
    assert [m.version for m in applied] == [m.version for m in list_migrations()]
    assert migrate(empty_database) == []
    with psycopg.connect(empty_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert versions == [m.version for m in list_migrations()]
    assert {"api_keys", "runs", "attempts", "schema_migrations"} <= tables


def test_two_concurrent_migrations_apply_once(empty_database: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(len(migrate(empty_database)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(results) == [0, 0, 0, len(list_migrations())]


def test_monidctl_migrate_is_safe_to_run_twice(empty_database: str, redis_url: str) -> None:
    env = {"DATABASE_URL": empty_database, "REDIS_URL": redis_url}
    first = monidctl("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    second = monidctl("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "0 migration(s) applied now" in second.stdout


def test_keys_create_list_revoke(base_env: dict[str, str], client: FlaskClient) -> None:
    created = monidctl("keys", "create", "--user", "user_cli", "--label", "laptop", env=base_env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("monid_live_") and len(key) >= len("monid_live_") + 22
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/runs", headers=headers).status_code == 200

    test_key = monidctl("keys", "create", "--user", "USER#user_cli", "--test", env=base_env)
    assert test_key.stdout.strip().splitlines()[-1].startswith("monid_test_")

    listed = monidctl("keys", "list", "--user", "user_cli", env=base_env)
    assert listed.returncode == 0
    assert "laptop" in listed.stdout and key not in listed.stdout
    assert key[:17] in listed.stdout  # the recognisable prefix, never the secret

    revoked = monidctl("keys", "revoke", key, env=base_env)
    assert revoked.returncode == 0, revoked.stderr
    assert "API_KEY_CACHE_SECONDS" in revoked.stdout
    time.sleep(float(base_env["API_KEY_CACHE_SECONDS"]) + 0.05)  # the web's cached lookup
    answer = client.get("/v1/runs", headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["errorCode"] == "UNAUTHORIZED"
    listed_after = monidctl("keys", "list", "--user", "user_cli", env=base_env).stdout
    line = next(x for x in listed_after.splitlines() if key[:17] in x)
    assert len(re.findall(r"\d{4}-\d\d-\d\dT", line)) == 2  # created and revoked times

    again = monidctl("keys", "revoke", "999999", env=base_env)
    assert again.returncode == 1 and "no key" in again.stderr


def test_keys_create_refuses_a_bad_user(base_env: dict[str, str]) -> None:
    bad = monidctl("keys", "create", "--user", "no spaces please", env=base_env)
    assert bad.returncode == 2
    assert "user ID" in bad.stderr


def test_only_a_hash_of_the_key_is_stored(base_env: dict[str, str], database_url: str) -> None:
    created = monidctl("keys", "create", "--user", "user_hash", env=base_env)
    key = created.stdout.strip().splitlines()[-1]
    secret = key.split("_")[-1]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT * FROM api_keys WHERE user_id = 'user_hash'").fetchall()
    assert rows and secret not in repr(rows)


def test_catalog_check(tmp_path: Path) -> None:
    good = monidctl("catalog", "check", env={})
    assert good.returncode == 0, good.stderr
    assert "/echo" in good.stdout and "is valid" in good.stdout
    (tmp_path / "bad.json").write_text('{"provider": "bad", "name": "Bad", "adapter": "demo",'
                                       ' "endpoints": [{"path": "nope"}]}')
    bad = monidctl("catalog", "check", "--dir", str(tmp_path), env={})
    assert bad.returncode == 1
    assert "bad.json" in bad.stderr and "endpoints/0" in bad.stderr


def test_a_command_without_settings_says_which_variable(redis_url: str) -> None:
    done = monidctl("migrate", env={"DATABASE_URL": "", "REDIS_URL": redis_url})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "monid: configuration error: DATABASE_URL is not set: expected a postgresql:// URL")


def test_an_unreachable_database_is_a_clear_error(redis_url: str) -> None:
    done = monidctl("migrate", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
                                    "REDIS_URL": redis_url})
    assert done.returncode == 1
    assert "monidctl:" in done.stderr and "Traceback" not in done.stderr



def test_wallet_credit_and_show(base_env: dict[str, str], client: FlaskClient) -> None:
    created = monidctl("keys", "create", "--user", "user_money", env=base_env)
    key = created.stdout.strip().splitlines()[-1]
    credited = monidctl("wallet", "credit", "--user", "user_money", "--amount", "10.00",
                        "--note", "welcome", env=base_env)
    assert credited.returncode == 0, credited.stderr
    assert "balance 10.000000 USD" in credited.stdout
    again = monidctl("wallet", "credit", "--user", "user_money", "--amount", "0.0000015",
                     env=base_env)  # half-even to the micro-dollar: 2 micro-dollars
    assert "balance 10.000002 USD" in again.stdout
    balance = client.get("/v1/wallet/balance", headers={"Authorization": f"Bearer {key}"})
    assert balance.get_json()["balance"] == {"value": 10.000002, "currency": "USD"}
    shown = monidctl("wallet", "show", "--user", "user_money", env=base_env)
    assert shown.returncode == 0
    assert "balance 10.000002 USD, held 0.000000 USD" in shown.stdout
    assert "CREDIT" in shown.stdout and "welcome" in shown.stdout


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "nan", "2000000"])
def test_wallet_credit_refuses_a_bad_amount(base_env: dict[str, str], amount: str) -> None:
    done = monidctl("wallet", "credit", "--user", "user_money", "--amount", amount,
                    env=base_env)
    assert done.returncode == 2
    assert "amount" in done.stderr
