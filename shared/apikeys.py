"""A workspace's API keys over the API: listed (never the key itself), renamed, revoked.

A key is named by its label, unique among the workspace's live keys. Revoking one
forgets it in this process's key cache at once; other web processes refuse it within
`API_KEY_CACHE_SECONDS`. `lastUsedAt` comes from `shared.keyuse`: what the database
holds, or this process's newer note.
"""

from __future__ import annotations

from dataclasses import replace

from psycopg.errors import UniqueViolation

from shared import cursors, store
from shared.accounts import user_id_of
from shared.db import autocommit, transaction
from shared.errors import ApiKeyNotFound, InvalidRequest
from shared.keys import label_problem
from shared.services import Page, Services, page_start
from shared.store import ApiKey

# Labels of keys made before they were checked may be longer; none is longer than this.
MAX_STORED_LABEL = 200


def _addressable(label: str) -> bool:
    return 0 < len(label) <= MAX_STORED_LABEL and "\x00" not in label


def _with_noted_use(svc: Services, key: ApiKey) -> ApiKey:
    noted = svc.key_use.noted(key.id)
    if noted is not None and (key.last_used_at is None or key.last_used_at < noted):
        return replace(key, last_used_at=noted)
    return key


def list_keys(svc: Services, caller: str, *, limit: int, cursor: str | None = None
              ) -> Page[ApiKey]:
    """A page of the workspace's live keys, oldest first."""
    after = page_start(cursors.decode_keys_cursor, cursor) or 0
    with autocommit(svc.pool) as conn:
        found, more = store.list_live_api_keys(conn, user_id_of(caller), limit, after)
    return Page([_with_noted_use(svc, k) for k in found],
                cursors.encode_keys_cursor(found[-1].id) if more else None)


def rename_key(svc: Services, caller: str, label: str, new_label: str) -> ApiKey:
    """The key labelled `label`, now `new_label`; ApiKeyNotFound, or InvalidRequest
    when the new label is not one or another live key has it."""
    if not _addressable(label):
        raise ApiKeyNotFound(label)
    problem = label_problem(new_label)
    if problem is not None:
        raise InvalidRequest({"label": [problem]})
    user_id = user_id_of(caller)
    taken = InvalidRequest({"label": ["already names another key of this workspace"]})
    try:
        with transaction(svc.pool) as conn:
            renamed = store.rename_api_key(conn, user_id, label, new_label)
            if renamed is None and store.find_live_api_key(conn, user_id, label) is not None:
                raise taken
    except UniqueViolation:  # another rename to the same label, at the same time
        raise taken from None
    if renamed is None:
        raise ApiKeyNotFound(label)
    return _with_noted_use(svc, renamed)


def revoke_key(svc: Services, caller: str, label: str) -> ApiKey:
    """Revoke the key labelled `label`; ApiKeyNotFound when there is no such live key."""
    if not _addressable(label):
        raise ApiKeyNotFound(label)
    with transaction(svc.pool) as conn:
        revoked = store.revoke_api_key_by_label(conn, user_id_of(caller), label)
    if revoked is None:
        raise ApiKeyNotFound(label)
    svc.keys.discard(revoked.key_hash)
    return revoked
