"""A workspace's keys over the API: `GET /v1/api-keys`, `PATCH|DELETE
/v1/api-keys/:label`; labels unique among live keys; `lastUsedAt` written in batches."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from api.app import create_app
from shared import keys, store
from shared.db import list_migrations, migrate, transaction
from shared.settings import Settings
from tests.helpers import auth, monidctl

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _labelled(db: ConnectionPool, user: str, label: str | None) -> str:
    key = keys.generate_key()
    with transaction(db) as conn:
        made = store.insert_api_key(conn, user_id=user, label=label, mode="live",
                                    key_prefix=keys.display_prefix(key),
                                    key_hash=keys.hash_key(key))
    assert made is not None
    return key


def test_keys_are_listed_without_the_key(client: FlaskClient, db: ConnectionPool) -> None:
    key = _labelled(db, "user_abc123", "ci")
    other = _labelled(db, "user_abc123", None)
    _labelled(db, "someone_else", "ci")  # another workspace's: never listed
    answer = client.get("/v1/api-keys", headers=auth(key))
    assert answer.status_code == 200, answer.json
    items = answer.json["items"]
    assert "cursor" not in answer.json
    assert items[0]["label"] == "ci" and re.fullmatch(r"key-\d+", items[1]["label"])
    assert len(items) == 2
    first = items[0]
    assert set(first) <= {"label", "keyPrefix", "createdBy", "createdAt", "lastUsedAt"}
    assert first["keyPrefix"] == keys.display_prefix(key) and first["createdBy"] == \
        "USER#user_abc123" and ISO.match(first["createdAt"])
    assert key not in answer.get_data(as_text=True) and other not in answer.get_data(as_text=True)


def test_keys_come_in_pages(client: FlaskClient, db: ConnectionPool) -> None:
    key = _labelled(db, "user_abc123", "k0")
    for n in range(1, 5):
        _labelled(db, "user_abc123", f"k{n}")
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/api-keys", headers=auth(key), query_string=query).json
        seen += [i["label"] for i in page["items"]]
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert seen == ["k0", "k1", "k2", "k3", "k4"]
    for bad in ({"limit": 0}, {"limit": "x"}, {"cursor": "nope"}, {"other": 1}):
        refused = client.get("/v1/api-keys", headers=auth(key), query_string=bad)
        assert refused.status_code == 400 and refused.json["errorCode"] == "VALIDATION_FAILED"
        assert set(refused.json["errors"]) == set(bad)


def test_a_key_is_renamed_and_labels_stay_unique(client: FlaskClient,
                                                 db: ConnectionPool) -> None:
    key = _labelled(db, "user_abc123", "old")
    _labelled(db, "user_abc123", "taken")
    _labelled(db, "someone_else", "mine")
    renamed = client.patch("/v1/api-keys/old", headers=auth(key), json={"label": "new.one"})
    assert renamed.status_code == 200, renamed.json
    assert renamed.json["label"] == "new.one"
    clash = client.patch("/v1/api-keys/new.one", headers=auth(key), json={"label": "taken"})
    assert clash.status_code == 400 and "label" in clash.json["errors"]
    # Another workspace's label is free here; its key is not found from here.
    assert client.patch("/v1/api-keys/new.one", headers=auth(key),
                        json={"label": "mine"}).status_code == 200
    for path in ("/v1/api-keys/new.one", "/v1/api-keys/nope"):
        missing = client.patch(path, headers=auth(key), json={"label": "x"})
        assert missing.status_code == 404 and missing.json["errorCode"] == "NOT_FOUND"
    for body in ({}, {"label": ""}, {"label": "has space"}, {"label": "a" * 65},
                 {"label": 5}, {"label": "ok", "more": 1}):
        refused = client.patch("/v1/api-keys/mine", headers=auth(key), json=body)
        assert refused.status_code == 400, body
        assert refused.json["errorCode"] == "VALIDATION_FAILED"
    # The same label, once: still unique when made by monidctl's way too.
    with transaction(db) as conn:
        again = store.insert_api_key(conn, user_id="user_abc123", label="taken", mode="live",
                                     key_prefix="monid_live_xxxxxx", key_hash=b"x" * 32)
    assert again is None


def test_a_key_is_revoked_and_its_label_freed(client: FlaskClient, db: ConnectionPool) -> None:
    key = _labelled(db, "user_abc123", "main")
    doomed = _labelled(db, "user_abc123", "leaked")
    assert client.get("/v1/auth/whoami", headers=auth(doomed)).status_code == 200
    revoked = client.delete("/v1/api-keys/leaked", headers=auth(key))
    assert revoked.status_code == 200 and revoked.json["label"] == "leaked"
    # This process forgot it at once, though it was in its key cache.
    assert client.get("/v1/auth/whoami", headers=auth(doomed)).status_code == 401
    assert [i["label"] for i in client.get("/v1/api-keys", headers=auth(key)).json["items"]] \
        == ["main"]
    assert client.delete("/v1/api-keys/leaked", headers=auth(key)).status_code == 404
    _labelled(db, "user_abc123", "leaked")  # the label names a new key now
    assert client.delete("/v1/api-keys/" + "x" * 300, headers=auth(key)).status_code == 404
    assert client.delete("/v1/api-keys/a%00b", headers=auth(key)).status_code == 404
    assert client.get("/v1/api-keys").status_code == 401


def test_a_key_that_started_runs_is_never_deleted(client: FlaskClient,
                                                  db: ConnectionPool) -> None:
    """Runs name their key without a foreign key's lock on every accept: the key's row
    outlives its revocation, and the database refuses deleting it."""
    key = _labelled(db, "user_abc123", "main")
    started = client.post("/v1/run", headers=auth(key),
                          json={"provider": "demo", "endpoint": "/echo",
                                "input": {"message": "kept"}})
    assert started.status_code == 202
    assert client.delete("/v1/api-keys/main", headers=auth(key)).status_code == 200
    with transaction(db) as conn:
        row = conn.execute("SELECT k.revoked_at IS NOT NULL AS revoked FROM runs r"
                           " JOIN api_keys k ON k.id = r.api_key_id WHERE r.id = %s",
                           (started.json["runId"],)).fetchone()
    assert row == {"revoked": True}
    with pytest.raises(psycopg.errors.RestrictViolation, match="never deleted"), \
            transaction(db) as conn:
        conn.execute("DELETE FROM api_keys")


@pytest.fixture
def flushing(settings: Settings, db: ConnectionPool) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, api_key_last_used_flush_seconds=3600))
    yield app
    app.extensions["monid"].close()


def test_last_use_is_noted_in_memory_and_written_in_batches(
        flushing: Flask, db: ConnectionPool) -> None:
    key = _labelled(db, "user_abc123", "used")
    client = flushing.test_client()
    for _ in range(5):
        assert client.get("/v1/auth/whoami", headers=auth(key)).status_code == 200
    with transaction(db) as conn:
        assert store.list_api_keys(conn, "user_abc123")[0].last_used_at is None  # not yet
    listed = client.get("/v1/api-keys", headers=auth(key)).json["items"][0]
    assert ISO.match(listed["lastUsedAt"])  # this process's own note
    svc = flushing.extensions["monid"]
    svc.key_use.flush_seconds = 0.0  # due now: the next request writes the notes
    client.get("/v1/auth/whoami", headers=auth(key))
    with transaction(db) as conn:
        written = store.list_api_keys(conn, "user_abc123")[0].last_used_at
    assert written is not None
    # Never moved backwards by an older note.
    with transaction(db) as conn:
        store.record_api_keys_used(conn, {store.list_api_keys(conn, "user_abc123")[0].id:
                                          written.replace(year=2000)})
        assert store.list_api_keys(conn, "user_abc123")[0].last_used_at == written


def test_keys_from_before_get_labels_unique_among_live_keys(empty_database: str) -> None:
    before = [m for m in list_migrations() if m.version < 16]
    with psycopg.connect(empty_database) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                     " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for migration in before:
            conn.execute(migration.path.read_text())  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
        for n, (user, label, revoked) in enumerate([
                ("u", None, False), ("u", "ci", False), ("u", "ci", False), ("u", "ci", True),
                ("v", "ci", False), ("u", "", False)], start=1):
            conn.execute("INSERT INTO api_keys (user_id, label, mode, key_prefix, key_hash,"
                         " revoked_at) VALUES (%s, %s, 'live', 'monid_live_xxxxxx', %s,"
                         " CASE WHEN %s THEN now() END)", (user, label, bytes([n]) * 32, revoked))
    migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute("SELECT id, user_id, label FROM api_keys ORDER BY id").fetchall()
    assert rows == [(1, "u", "key-1"), (2, "u", "ci"), (3, "u", "ci-3"), (4, "u", "ci"),
                    (5, "v", "ci"), (6, "u", "key-6")]


def test_monidctl_refuses_a_label_taken_or_malformed(base_env: dict[str, str],
                                                     db: ConnectionPool) -> None:
    assert monidctl("keys", "create", "--user", "user_cli", "--label", "laptop",
                    env=base_env).returncode == 0
    taken = monidctl("keys", "create", "--user", "user_cli", "--label", "laptop", env=base_env)
    assert taken.returncode != 0 and "already has a key labelled 'laptop'" in taken.stderr
    bad = monidctl("keys", "create", "--user", "user_cli", "--label", "has space",
                   env=base_env)
    assert bad.returncode != 0 and "--label must be" in bad.stderr
    with transaction(db) as conn:
        assert [k.label for k in store.list_api_keys(conn, "user_cli")] == ["laptop"]
