"""Which Argon2id parameters the client uses for new keys, and the weakest it accepts.

``ECRIN_KDF_PROFILE`` picks them: ``moderate`` (default, libsodium MODERATE),
``sensitive`` (libsodium SENSITIVE) or ``insecure-test`` (the libsodium minimum, for
automated tests only; the gateway refuses it unless its own minimum was lowered).

The floor matters because a server that hands out weak parameters at login would receive
a signature it could brute-force cheaply: the client refuses parameters weaker than the
floor (MODERATE, or the minimum under ``insecure-test``). It also refuses parameters above
a ceiling (``KdfParams.within_ceiling``: SENSITIVE's memory, 16 passes): a server must not
be able to hang the device or exhaust its memory.
"""

from __future__ import annotations

import os

from ecrin_client.errors import IntegrityError, InvalidInput
from ecrin_e2ee import KdfParams

ENV = "ECRIN_KDF_PROFILE"
PROFILES = ("moderate", "sensitive", "insecure-test")


def _profile() -> str:
    name = os.environ.get(ENV, "moderate").strip().lower() or "moderate"
    if name not in PROFILES:
        raise InvalidInput(f"{ENV} must be one of {', '.join(PROFILES)}")
    return name


def default_params() -> KdfParams:
    """Parameters for new keys (sign-up, passphrase change, recovery)."""
    name = _profile()
    if name == "sensitive":
        return KdfParams.sensitive()
    if name == "insecure-test":
        return KdfParams.insecure_for_tests()
    return KdfParams.moderate()


def floor() -> KdfParams:
    return KdfParams.insecure_for_tests() if _profile() == "insecure-test" else KdfParams.moderate()


def check_server_params(params: KdfParams) -> None:
    """Refuse parameters weaker than the floor (a downgrade by the server), or above the
    ceiling (a hostile value that would hang the device or exhaust its memory)."""
    if not params.within_ceiling():
        raise IntegrityError(
            "the server asked for key-derivation parameters above what this client accepts "
            f"(at most {KdfParams.CEILING_OPSLIMIT} passes and "
            f"{KdfParams.CEILING_MEMLIMIT >> 20} MiB); refusing to derive")
    minimum = floor()
    if params.opslimit < minimum.opslimit or params.memlimit < minimum.memlimit:
        raise IntegrityError(
            "the server asked for key-derivation parameters weaker than this client accepts; "
            "refusing to sign in")
