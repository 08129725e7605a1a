"""Webhook secrets at rest: sealed with a key from configuration (a mounted Kubernetes Secret), so
a copy of the database alone cannot forge a partner's notifications. Several keys may be given,
one per line: the first seals, every one opens (rotate by adding a new first key, re-sealing, then
dropping the old)."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from ach_platform.settings import ConfigError, data_dir
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "fernet:"


class SecretUnreadable(Exception):
    """A sealed secret that none of the configured keys opens."""


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        self._first = keys[0] if keys else b""
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise ConfigError("NOTIFY_SECRETS_KEY_FILE: every line must be a Fernet key") from None

    @classmethod
    def from_file(cls, given: str) -> SecretBox:
        """The keys in NOTIFY_SECRETS_KEY_FILE; without it, a key made once under ACH_DATA_DIR
        (local use)."""
        path = Path(given) if given else data_dir() / "notify-secrets.key"
        if not given and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # created readable by its owner only; another process may be making it too
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(Fernet.generate_key() + b"\n")
            except FileExistsError:
                pass
        try:
            keys = [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]
        except OSError:
            raise ConfigError(f"NOTIFY_SECRETS_KEY_FILE: cannot read {path}") from None
        if not keys:
            raise ConfigError(f"NOTIFY_SECRETS_KEY_FILE: {path} holds no key")
        return cls(keys)

    def derived_key(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. digests of residents' numbers), from the sealing key."""
        return hmac.new(self._first, purpose.encode(), hashlib.sha256).digest()

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode() if secret else ""

    def open(self, stored: str) -> str:
        """The secret; one stored before sealing (no prefix) is returned as it is."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("the channel's secret does not open with the configured keys") from None

    def sealed(self, stored: str) -> bool:
        return not stored or stored.startswith(PREFIX)
