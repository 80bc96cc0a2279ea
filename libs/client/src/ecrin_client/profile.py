"""The profile folder (``ECRIN_HOME``, default ``~/.ecrin``): one account on one device.

``profile.json`` holds the server URL, account id, email, role and the account's public KDF
salt and parameters; ``tokens.json`` the access and refresh tokens; ``pins.json`` the
fingerprints the user verified; ``bindings.json`` the fingerprints invitations bound
(:mod:`ecrin_client.trust`); ``state.db`` the highest version seen of each record and key
(:mod:`ecrin_client.seen_versions`), so that a server serving an older version is caught.
The folder is 0700 and every file 0600. Nothing here is a passphrase, a recovery key or
an unwrapped key: the SDK never hands one to this module.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ecrin_client.errors import InvalidInput
from ecrin_client.seen_versions import SeenVersions

ENV_HOME = "ECRIN_HOME"
DIR_MODE = 0o700
FILE_MODE = 0o600


class ProfileSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)  # start-up time

    server_url: str | None = None
    account_id: str | None = None
    email: str | None = None
    role: str | None = None
    kdf_salt: str | None = None
    kdf_params: dict[str, Any] | None = None
    # Old passphrase wraps still to delete from the kms (a crash after a passphrase change).
    stale_wrap_salts: list[str] = []


class StoredTokens(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    access_token: str
    refresh_token: str
    session_id: str


class Profile:
    SETTINGS = "profile.json"
    TOKENS = "tokens.json"
    PINS = "pins.json"
    #: Before ``state.db``: merged into it on first use, then removed.
    VERSIONS = "versions.json"
    STATE = "state.db"

    def __init__(self, home: Path) -> None:
        self.home = Path(home).expanduser()
        self._seen: SeenVersions | None = None

    @property
    def _marks(self) -> SeenVersions:
        if self._seen is None:
            self.ensure()
            self._seen = SeenVersions(self.home / self.STATE, self.home / self.VERSIONS)
        return self._seen

    def close(self) -> None:
        """Close ``state.db`` (opened again on next use)."""
        if self._seen is not None:
            self._seen.close()

    @classmethod
    def from_env(cls) -> Profile:
        return cls(Path(os.environ.get(ENV_HOME) or Path.home() / ".ecrin"))

    def ensure(self) -> None:
        self.home.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.home, DIR_MODE)

    def _read(self, name: str) -> Any:
        path = self.home / name
        try:
            return json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, OSError) as exc:
            raise InvalidInput(f"{path} is unreadable ({exc.__class__.__name__})") from None

    def _write(self, name: str, data: Any) -> None:
        """Atomic write with mode 0600 from the first byte (never world-readable)."""
        self.ensure()
        path = self.home / name
        tmp = self.home / f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # settings

    def settings(self) -> ProfileSettings:
        raw = self._read(self.SETTINGS)
        try:
            return ProfileSettings.model_validate(raw or {})
        except ValidationError:
            raise InvalidInput(f"{self.home / self.SETTINGS} is malformed") from None

    def save_settings(self, settings: ProfileSettings) -> None:
        self._write(self.SETTINGS, settings.model_dump(mode="json"))

    def update_settings(self, **changes: Any) -> ProfileSettings:
        settings = self.settings().model_copy(update=changes)
        self.save_settings(settings)
        return settings

    # tokens

    def tokens(self) -> StoredTokens | None:
        raw = self._read(self.TOKENS)
        if not raw:
            return None
        try:
            return StoredTokens.model_validate(raw)
        except ValidationError:
            return None

    def save_tokens(self, tokens: StoredTokens | None) -> None:
        if tokens is None:
            (self.home / self.TOKENS).unlink(missing_ok=True)
        else:
            self._write(self.TOKENS, tokens.model_dump(mode="json"))

    # pins

    def pins(self) -> dict[str, str]:
        raw = self._read(self.PINS)
        return {str(k): str(v) for k, v in (raw or {}).items()}

    def pinned(self, account_id: str) -> str | None:
        return self.pins().get(account_id)

    def pin(self, account_id: str, fingerprint: str) -> None:
        pins = self.pins()
        pins[account_id] = fingerprint
        self._write(self.PINS, pins)

    def unpin(self, account_id: str) -> None:
        pins = self.pins()
        if pins.pop(account_id, None) is not None:
            self._write(self.PINS, pins)

    # highest record versions seen (rollback detection)

    def seen_versions(self) -> dict[str, int]:
        return self._marks.all()

    def seen_version(self, record_id: str) -> int:
        return self._marks.get(record_id)

    def remember_versions(self, versions: dict[str, int]) -> None:
        """Raise the high-water marks (never lower them): one transaction for many
        records, each row updated in place."""
        self._marks.remember(versions)
