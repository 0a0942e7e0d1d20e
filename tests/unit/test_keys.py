"""API keys: their format, their randomness, their hash and their display prefix."""

from __future__ import annotations

import hashlib
import hmac
import math
import string
from collections.abc import Callable

import pytest

from shared import keys
from shared.keys import display_prefix, generate_key, hash_key, hashes_match, key_mode

BASE62 = set(string.ascii_letters + string.digits)


@pytest.mark.parametrize(("test", "prefix"), [(False, "monid_live_"), (True, "monid_test_")])
def test_generate_key_format(test: bool, prefix: str) -> None:
    key = generate_key(test=test)
    assert key.startswith(prefix)
    secret = key[len(prefix):]
    assert len(secret) == 32
    assert set(secret) <= BASE62
    assert key_mode(key) == ("test" if test else "live")


def test_generate_key_defaults_to_live() -> None:
    assert generate_key().startswith("monid_live_")


def test_secret_carries_at_least_128_bits() -> None:
    assert keys.SECRET_LENGTH * math.log2(62) >= 128


def test_generated_keys_are_random() -> None:
    secrets_made = [generate_key()[len("monid_live_"):] for _ in range(2000)]
    assert len(set(secrets_made)) == len(secrets_made)
    # Every base62 character turns up, and every position varies widely.
    assert set("".join(secrets_made)) == BASE62
    for position in range(32):
        assert len({s[position] for s in secrets_made}) >= 50


@pytest.mark.parametrize(("key", "mode"), [
    ("monid_live_" + "a" * 20, "live"),
    ("monid_test_" + "Z9" * 10, "test"),
    ("monid_live_" + "x" * 128, "live"),
    ("monid_live_" + "a" * 19, None),  # secret too short
    ("monid_live_" + "x" * 129, None),  # secret too long
    ("monid_prod_" + "a" * 32, None),
    ("MONID_LIVE_" + "a" * 32, None),
    ("monid_live_" + "a" * 31 + "-", None),
    ("monid_live_" + "a" * 31 + " ", None),
    ("Bearer monid_live_" + "a" * 32, None),
    (" monid_live_" + "a" * 32, None),
    ("monid_live_", None),
    ("", None),
])
def test_key_mode(key: str, mode: str | None) -> None:
    assert key_mode(key) == mode


def test_key_mode_rejects_a_trailing_newline() -> None:
    assert key_mode(generate_key() + "\n") is None


def test_hash_key_is_sha256_of_the_whole_key() -> None:
    key = generate_key()
    digest = hash_key(key)
    assert digest == hashlib.sha256(key.encode()).digest()
    assert isinstance(digest, bytes)
    assert len(digest) == 32
    assert hash_key("abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_hash_key_is_deterministic_and_distinguishes_keys() -> None:
    key = generate_key()
    assert hash_key(key) == hash_key(key)
    assert hash_key(key) != hash_key(key[:-1] + ("a" if key[-1] != "a" else "b"))
    assert hash_key("monid_live_" + "a" * 32) != hash_key("monid_test_" + "a" * 32)


def test_hashes_match() -> None:
    key = generate_key()
    assert hashes_match(hash_key(key), hash_key(key)) is True
    assert hashes_match(hash_key(key), hash_key(generate_key())) is False
    assert hashes_match(hash_key(key), hash_key(key)[:-1]) is False
    assert hashes_match(b"", b"") is True


def test_hashes_match_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real: Callable[[bytes, bytes], bool] = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    a, b = hash_key("one"), hash_key("two")
    assert hashes_match(a, b) is False
    assert calls == [(a, b)]


@pytest.mark.parametrize("test", [False, True])
def test_display_prefix_never_reveals_the_whole_secret(test: bool) -> None:
    for _ in range(200):
        key = generate_key(test=test)
        secret = key[len("monid_live_"):]
        prefix = display_prefix(key)
        assert key.startswith(prefix)
        assert prefix.startswith("monid_test_" if test else "monid_live_")
        assert len(prefix) == len("monid_live_") + 6
        assert secret not in prefix
        assert len(key) - len(prefix) >= 26  # at least 26 characters stay hidden


def test_display_prefix_hides_most_of_the_shortest_valid_secret() -> None:
    key = "monid_live_" + "k" * 20
    assert key_mode(key) == "live"
    prefix = display_prefix(key)
    assert prefix != key
    assert len(key) - len(prefix) == 14


def test_display_prefixes_tell_keys_apart() -> None:
    prefixes = {display_prefix(generate_key()) for _ in range(500)}
    assert len(prefixes) >= 495
