"""Opt-in API keys for the HTTP API: where they come from, and how a request's is checked.

Keys come from HOMEVALUE_API_KEYS (comma-separated) and/or the file HOMEVALUE_API_KEYS_FILE
names (one per line, `#` comments). With neither set the API is open, the right default on
loopback (`make api`); with either set, a setting that yields no usable key is an error at
start-up, so a typo cannot leave an exposed API open. Only SHA-256 digests of the keys are
kept, and a presented key is hashed and compared with every one of them by
`hmac.compare_digest`: the time taken does not depend on how much of a key was right, nor
on which key matched. Messages name a key by its position, never by its value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from homevalue import config
from homevalue.errors import ApiKeyError

# RFC 6750's b64token: what `Authorization: Bearer <key>` can carry as it is.
_KEY = re.compile(r"[A-Za-z0-9._~+/-]+=*")
MAKE_ONE = 'make one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`'


@dataclass(frozen=True)
class KeyRing:
    """The accepted keys, as SHA-256 digests only."""

    digests: tuple[bytes, ...]

    @classmethod
    def of(cls, keys: Iterable[str]) -> KeyRing:
        return cls(tuple(hashlib.sha256(key.encode("ascii")).digest() for key in keys))

    def matches(self, presented: bytes) -> bool:
        """Whether `presented` is one of the keys, comparing with all of them."""
        digest = hashlib.sha256(presented).digest()
        found = False
        for known in self.digests:
            found |= hmac.compare_digest(digest, known)
        return found

    def __repr__(self) -> str:
        return f"KeyRing({len(self.digests)} keys)"


def _checked(key: str, where: str) -> str:
    """`key` if it is usable; otherwise an ApiKeyError saying where it is and why not."""
    if len(key) < config.API_KEY_MIN_LENGTH or not _KEY.fullmatch(key):
        raise ApiKeyError(
            f"{where} is not a usable API key: at least {config.API_KEY_MIN_LENGTH} "
            "characters of letters, digits and - . _ ~ + / (then = signs); " + MAKE_ONE
        )
    return key


def _from_variable(value: str) -> list[str]:
    name = config.API_KEYS_VARIABLE
    keys = [key.strip() for key in value.split(",")]
    found = [_checked(key, f"key {n} of {name}") for n, key in enumerate(keys, 1) if key]
    if not found:
        raise ApiKeyError(
            f"{name} is set but holds no key: set it to keys separated by commas ({MAKE_ONE}), "
            "or unset it to leave the API open"
        )
    return found


def _from_file(value: str) -> list[str]:
    name = config.API_KEYS_FILE_VARIABLE
    if not value.strip():
        raise ApiKeyError(f"{name} is set but holds no file name: name a file, or unset it")
    path = Path(value)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ApiKeyError(
            f"{name}: {path} cannot be read ({reason}): fix it, or unset it"
        ) from None
    found = []
    for number, line in enumerate(lines, 1):
        key = line.split("#", 1)[0].strip()  # '#' is never part of a key
        if key:
            found.append(_checked(key, f"line {number} of {path} ({name})"))
    if not found:
        raise ApiKeyError(
            f"{name}: {path} holds no key: add one per line ({MAKE_ONE}), or unset it"
        )
    return found


def load_keys() -> KeyRing | None:
    """The configured keys, or None when none are configured (the API is open)."""
    variable, file = config.api_key_settings()
    if variable is None and file is None:
        return None
    keys = (_from_variable(variable) if variable is not None else []) + (
        _from_file(file) if file is not None else []
    )
    return KeyRing.of(keys)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries, `Authorization: Bearer <key>` or `X-API-Key: <key>`
    (ASGI headers: lower-case names, raw bytes), or None if it carries none."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None
