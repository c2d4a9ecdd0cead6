"""Keyed one-way pseudonyms: how the audit log refers to a person it must no longer name.

A pseudonym is an HMAC-SHA256 of the name under a secret key. Without the key it
cannot be reversed, not even by hashing a list of likely names and comparing; with
the key, an operator can still answer "is this line about user X?" by computing X's
pseudonym. A thread id gets its own pseudonym (a different prefix inside the HMAC), so
the lines of one erased thread stay grouped.

The key is ``MEMAGENT_PSEUDONYM_KEY`` when set (production: keep it in your secret
store, the same for every process that erases). Otherwise memagent makes a random
key once and keeps it in ``MEMAGENT_HOME/pseudonym.key`` (readable by its owner only).
Not in the database on purpose: a copy of the database or of a backup, which holds the
pseudonyms, must not also hold what reverses them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from agent.errors import SettingsError
from agent.settings import Settings

KEY_FILE = "pseudonym.key"
"""The generated key's file name under ``MEMAGENT_HOME``."""
MIN_KEY_CHARS = 32
"""A shorter key could be guessed, and every pseudonym with it."""
HEX_CHARS = 32
"""A pseudonym's length in hex digits: 128 bits, beyond any collision among users."""
USER_PREFIX = "user:"
THREAD_PREFIX = "thread:"


def pseudonym_key(settings: Settings) -> bytes:
    """The key pseudonyms are made with (see the module docstring).

    Raises:
        SettingsError: ``MEMAGENT_PSEUDONYM_KEY`` is shorter than ``MIN_KEY_CHARS``.
        OSError: The key file cannot be read or written.
    """
    if settings.pseudonym_key is not None:
        if len(settings.pseudonym_key) < MIN_KEY_CHARS:
            raise SettingsError(
                f"MEMAGENT_PSEUDONYM_KEY must be a random string of at least {MIN_KEY_CHARS} "
                'characters, e.g. the output of `python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"`.'
            )
        return settings.pseudonym_key.encode()
    return _stored_key(settings.home / KEY_FILE)


def _stored_key(path: Path) -> bytes:
    """The key in ``path``, made there first if there is none (the first maker wins)."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use theirs
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key


def _pseudonym(key: bytes, prefix: str, value: str) -> str:
    digest = hmac.new(key, f"{prefix}{value}".encode(), hashlib.sha256).hexdigest()[:HEX_CHARS]
    return f"{prefix}{digest}"


def user_pseudonym(key: bytes, user: str) -> str:
    """``user:<hex>``, the name the audit log keeps for an erased user."""
    return _pseudonym(key, USER_PREFIX, user)


def thread_pseudonym(key: bytes, thread_id: str) -> str:
    """``thread:<hex>``, the id the audit log keeps for a thread of an erased user."""
    return _pseudonym(key, THREAD_PREFIX, thread_id)
