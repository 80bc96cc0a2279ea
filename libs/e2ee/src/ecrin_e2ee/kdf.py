"""Passphrase key derivation: Argon2id master secret, then BLAKE2b keyed subkeys.

``derive_account_keys`` is deliberately slow (hundreds of milliseconds and 256 MiB with the
default parameters). Async callers must run it off the event loop::

    keys = await asyncio.to_thread(derive_account_keys, passphrase, salt, params)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import nacl.pwhash.argon2id as argon2id
from nacl.signing import SigningKey

from ecrin_e2ee import _seams
from ecrin_e2ee._secret import SecretKey
from ecrin_e2ee._wire import derive_key, field
from ecrin_e2ee.errors import FormatError

__all__ = [
    "AccountKeys",
    "KdfParams",
    "KeyEncryptionKey",
    "derive_account_keys",
    "new_salt",
]

_LOGIN_CONTEXT = b"ecrin-login-key"
_KEK_CONTEXT = b"ecrin-kek"


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost parameters; stored with the account and sent to the client at login."""

    opslimit: int
    memlimit: int
    alg: str = "argon2id13"

    ALG: ClassVar[str] = "argon2id13"
    #: The most a client derives with, whatever a server hands it: libsodium SENSITIVE's
    #: memory and four times its passes. Anything above would let a hostile server hang the
    #: device or exhaust its memory.
    CEILING_OPSLIMIT: ClassVar[int] = 16
    CEILING_MEMLIMIT: ClassVar[int] = argon2id.MEMLIMIT_SENSITIVE

    def __post_init__(self) -> None:
        if self.alg != self.ALG:
            raise FormatError("unsupported KDF algorithm")
        if not isinstance(self.opslimit, int) or not isinstance(self.memlimit, int):
            raise FormatError("KDF limits must be integers")
        if self.opslimit < argon2id.OPSLIMIT_MIN or self.opslimit > argon2id.OPSLIMIT_MAX:
            raise FormatError("opslimit out of range")
        if self.memlimit < argon2id.MEMLIMIT_MIN or self.memlimit > argon2id.MEMLIMIT_MAX:
            raise FormatError("memlimit out of range")

    @classmethod
    def moderate(cls) -> Self:
        """libsodium MODERATE (opslimit 3, 256 MiB): the default for new accounts."""
        return cls(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)

    @classmethod
    def sensitive(cls) -> Self:
        """libsodium SENSITIVE (opslimit 4, 1 GiB)."""
        return cls(argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE)

    @classmethod
    def insecure_for_tests(cls) -> Self:
        """The libsodium minimum (opslimit 1, 8 KiB). Tests and vectors only, never accounts."""
        return cls(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

    def within_ceiling(self) -> bool:
        """True unless the parameters exceed what a client accepts to derive with."""
        return (self.opslimit <= self.CEILING_OPSLIMIT
                and self.memlimit <= self.CEILING_MEMLIMIT)

    def to_json(self) -> dict[str, Any]:
        return {"alg": self.alg, "opslimit": self.opslimit, "memlimit": self.memlimit}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Self:
        return cls(
            opslimit=field(obj, "opslimit"), memlimit=field(obj, "memlimit"), alg=field(obj, "alg")
        )


class KeyEncryptionKey(SecretKey):
    """The KEK: wraps the identity private keys. Derived from the passphrase, stored nowhere."""


@dataclass(frozen=True, slots=True, repr=False)
class AccountKeys:
    """What a passphrase yields: the login signing key and the KEK."""

    login_signing_key: SigningKey
    kek: KeyEncryptionKey

    @property
    def login_public_key(self) -> bytes:
        """The 32-byte Ed25519 public key the gateway stores to authenticate logins."""
        return bytes(self.login_signing_key.verify_key)

    def __repr__(self) -> str:
        return "AccountKeys(<secret>)"

    __str__ = __repr__


SALT_SIZE = argon2id.SALTBYTES
MASTER_SECRET_SIZE = 32


def new_salt() -> bytes:
    """A fresh random 16-byte Argon2id salt for a new account."""
    return _seams.random_bytes(SALT_SIZE)


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        # NFKC so the same passphrase typed on two keyboards derives the same key.
        return unicodedata.normalize("NFKC", passphrase).encode("utf-8")
    return bytes(passphrase)


def derive_account_keys(passphrase: str | bytes, salt: bytes, params: KdfParams) -> AccountKeys:
    """Argon2id(passphrase, salt, params) -> 32-byte master secret -> login key and KEK.

    A ``str`` passphrase is NFKC-normalised and UTF-8 encoded. Subkeys:
    ``BLAKE2b(key=master, person="ecrin-login-key")`` is the Ed25519 seed of the login key,
    ``BLAKE2b(key=master, person="ecrin-kek")`` the KEK. Blocking and slow: see module doc.
    """
    if len(salt) != SALT_SIZE:
        raise ValueError(f"salt must be {SALT_SIZE} bytes")
    master = argon2id.kdf(
        MASTER_SECRET_SIZE,
        _passphrase_bytes(passphrase),
        salt,
        opslimit=params.opslimit,
        memlimit=params.memlimit,
    )
    login_seed = derive_key(master, _LOGIN_CONTEXT)
    kek = derive_key(master, _KEK_CONTEXT)
    return AccountKeys(SigningKey(login_seed), KeyEncryptionKey(kek))
