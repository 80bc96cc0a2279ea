"""Écrin client: the async SDK and the `ecrin` CLI. All cryptography goes through ecrin_e2ee.

    async with EcrinClient("https://ecrin.example.fr", Profile.from_env()) as client:
        await client.login("kine@example.fr", passphrase)
"""

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
