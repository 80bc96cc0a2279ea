"""Écrin client: the async SDK and the `ecrin` CLI. All cryptography goes through ecrin_e2ee.

    async with EcrinClient("https://ecrin.example.fr", Profile.from_env()) as client:
        await client.login("kine@example.fr", passphrase)
"""

from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): the `ecrin` CLI and its unlock agent import submodules of
# this package, and should not pay for httpx, pydantic and libsodium before they need them.
_EXPORTS = {
    "ROLES": "client", "EcrinClient": "client",
    **dict.fromkeys(("AuthError", "Conflict", "EcrinError", "IdentityMismatch",
                     "IntegrityError", "InvalidCredentials", "InvalidInput", "NotFound",
                     "NotLoggedIn", "PermissionDenied", "RateLimited", "SecondFactorRequired",
                     "ServerError", "SessionRevoked", "Unavailable"), "errors"),
    **dict.fromkeys(("Account", "LoginResult", "Me", "SessionInfo", "SignupResult",
                     "TotpEnrolment", "Verification"), "models"),
    "Patient": "patients", "Patients": "patients", "Profile": "profile",
    "RecordInfo": "records", "Records": "records",
}

if TYPE_CHECKING:
    from ecrin_client.client import ROLES, EcrinClient
    from ecrin_client.errors import (
        AuthError,
        Conflict,
        EcrinError,
        IdentityMismatch,
        IntegrityError,
        InvalidCredentials,
        InvalidInput,
        NotFound,
        NotLoggedIn,
        PermissionDenied,
        RateLimited,
        SecondFactorRequired,
        ServerError,
        SessionRevoked,
        Unavailable,
    )
    from ecrin_client.models import (
        Account,
        LoginResult,
        Me,
        SessionInfo,
        SignupResult,
        TotpEnrolment,
        Verification,
    )
    from ecrin_client.patients import Patient, Patients
    from ecrin_client.profile import Profile
    from ecrin_client.records import RecordInfo, Records


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ecrin_client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"ecrin_client.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ROLES",
    "Account",
    "AuthError",
    "Conflict",
    "EcrinClient",
    "EcrinError",
    "IdentityMismatch",
    "IntegrityError",
    "InvalidCredentials",
    "InvalidInput",
    "LoginResult",
    "Me",
    "NotFound",
    "NotLoggedIn",
    "Patient",
    "Patients",
    "PermissionDenied",
    "Profile",
    "RateLimited",
    "RecordInfo",
    "Records",
    "SecondFactorRequired",
    "ServerError",
    "SessionInfo",
    "SessionRevoked",
    "SignupResult",
    "TotpEnrolment",
    "Unavailable",
    "Verification",
]
