"""Checks of what a user types that cost nothing, run before any Argon2id or request: a
mistyped email should not cost half a second and 300 MB of memory before the server says no.
The server checks again; these only catch what it would refuse anyway."""

from __future__ import annotations

from ecrin_client.errors import InvalidInput


def check_email(email: str) -> str:
    """The email, if it is one the gateway accepts (the same library, without a DNS
    lookup); else :class:`InvalidInput` naming the field and the reason."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"email: {exc}", fields={"email": str(exc)}) from None
    return email


def check_invitation_code(text: str) -> str:
    """The code, if its checksum is right (a typo is caught here, not by the server)."""
    from ecrin_e2ee import InvalidCode, InvitationCode

    try:
        InvitationCode.from_text(text)
    except InvalidCode as exc:
        raise InvalidInput(f"not a valid invitation code: {exc}") from None
    return text
