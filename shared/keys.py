"""API keys: `monid_live_<secret>` / `monid_test_<secret>`; only a hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 32  # 32 base62 characters: about 190 bits of randomness
KEY_PATTERN = re.compile(r"^monid_(live|test)_([A-Za-z0-9]{20,128})$")
PREFIX_LENGTH = len("monid_live_") + 6
# A key's label: 1-64 of these, so that it reads well in a URL's path (`/v1/api-keys/:label`).
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
LABEL_RULE = "must be 1-64 letters, digits or . _ : @ -"


def generate_key(test: bool = False) -> str:
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"monid_{'test' if test else 'live'}_{secret}"


def key_mode(key: str) -> str | None:
    """`live` or `test` for a well-formed key, None for anything else."""
    match = KEY_PATTERN.fullmatch(key)
    return match.group(1) if match else None


def hash_key(key: str) -> bytes:
    # Keys carry far more randomness than any guessing can cover, so one
    # SHA-256 is enough; a slow password hash would only slow every request.
    return hashlib.sha256(key.encode()).digest()


def hashes_match(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def display_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]


def label_problem(label: str) -> str | None:
    """What is wrong with a new key's label, or None."""
    return None if LABEL_PATTERN.fullmatch(label) else LABEL_RULE
