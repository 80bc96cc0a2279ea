"""The library's exceptions.

Every exception inherits :class:`E2EEError` and the builtin that matches its meaning, so
callers may catch either. No message ever carries key material, plaintext or a value that
was being checked.
"""

from __future__ import annotations

__all__ = ["DecryptionError", "E2EEError", "FormatError", "IdentityMismatchError", "InvalidCode"]


class E2EEError(Exception):
    """Base class of every error raised by :mod:`ecrin_e2ee`."""


class DecryptionError(E2EEError, ValueError):
    """Something could not be opened: a ciphertext, a wrap, a signature, a binding.

    The message is always ``"decryption failed"``; it never says which check failed, so an
    attacker who tampers with stored data learns nothing from the error.
    """

    MESSAGE = "decryption failed"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class IdentityMismatchError(E2EEError, ValueError):
    """A public identity does not verify, or does not match the fingerprint pinned for it."""


class InvalidCode(E2EEError, ValueError):
    """A recovery key or invitation code is malformed or fails its checksum.

    The message may name the group that failed, never its characters.
    """


class FormatError(E2EEError, ValueError):
    """A public (non-secret) object is structurally invalid: a bad JSON shape, length or range."""
