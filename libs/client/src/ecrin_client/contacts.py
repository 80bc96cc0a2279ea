"""People by the name their owner gave them, never in clear outside this device.

A practitioner names the accounts they verified in person (``ecrin verify ACCOUNT --name
"Dr Martin"``) and the people they invite (``ecrin share invite ... --name``: the name goes
with the invitation id, and with the account that redeems it once this device bound it,
``trust.Binding``). Listings then show "Dr Martin (1a2b3c4d)" where they showed an account
id; the patient of a file is shown by the identity of that file.

The names are the account's own: kept in the profile's ``contacts.json`` sealed with
:func:`ecrin_e2ee.local_seal` (a key derived from the account's identity keys, so readable
wherever the account is unlocked and nowhere else), never sent to a server. A file that no
longer opens (another account's, altered) is reported, never silently replaced.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ecrin_client.errors import IntegrityError, InvalidInput
from ecrin_client.ids import short
from ecrin_e2ee import DecryptionError, IdentityKeys, local_open, local_seal

if TYPE_CHECKING:
    from ecrin_client.profile import Profile
    from ecrin_client.trust import Trust

__all__ = ["Contacts", "check_name"]

FILE = "contacts.json"
PURPOSE = "contacts"
MAX_NAME = 80


def check_name(name: str) -> str:
    """A contact name as typed: trimmed, 1 to 80 printable characters."""
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME or not cleaned.isprintable():
        raise InvalidInput(f"a contact name is 1 to {MAX_NAME} printable characters")
    return cleaned


class Contacts:
    """``Contacts(profile, identity_keys)``: the names this account gave, on this device."""

    def __init__(self, profile: Profile, identity: IdentityKeys) -> None:
        self.profile = profile
        self.identity = identity
        self.own_id = str(identity.account_id)
        self._data: dict[str, dict[str, str]] | None = None

    def _load(self) -> dict[str, dict[str, str]]:
        if self._data is not None:
            return self._data
        raw = self.profile._read(FILE)
        sealed = raw.get(self.own_id) if isinstance(raw, dict) else None
        data: dict[str, dict[str, str]] = {"accounts": {}, "invitations": {}}
        if sealed is not None:
            try:
                opened = json.loads(local_open(self.identity, PURPOSE, str(sealed)))
            except (DecryptionError, ValueError):
                raise IntegrityError(f"{self.profile.home / FILE} does not open with this "
                                     "account's keys: it was altered. Remove it to start "
                                     "again") from None
            for kind in data:
                found = opened.get(kind) if isinstance(opened, dict) else None
                if isinstance(found, dict):
                    data[kind] = {str(k): str(v) for k, v in found.items()}
        self._data = data
        return data

    def _save(self) -> None:
        data = self._load()
        raw = self.profile._read(FILE)
        stored: dict[str, Any] = raw if isinstance(raw, dict) else {}
        stored[self.own_id] = local_seal(self.identity, PURPOSE, json.dumps(
            data, sort_keys=True, ensure_ascii=False).encode())
        self.profile._write(FILE, stored)

    def name_account(self, account_id: str, name: str) -> None:
        self._load()["accounts"][str(account_id)] = check_name(name)
        self._save()

    def name_invitation(self, invitation_id: str, name: str) -> None:
        self._load()["invitations"][str(invitation_id)] = check_name(name)
        self._save()

    async def bind_invitees(self, trust: Trust, file_id: str) -> None:
        """Before naming a file's people: bind the accounts that redeemed this account's
        named invitations of the file (their proofs checked, ``Trust.scan_invitations``),
        so that they show by the name given at invitation time. One request, and only when
        some invitation was named."""
        if self._load()["invitations"]:
            await trust.scan_invitations(str(file_id))

    def name_of(self, account_id: str) -> str | None:
        """The name given to the account, or to an invitation it redeemed (once bound)."""
        data = self._load()
        if account_id in data["accounts"]:
            return data["accounts"][account_id]
        if not data["invitations"]:
            return None
        from ecrin_client.trust import TrustStore  # only when some invitation was named

        for binding in TrustStore(self.profile).bindings(account_id):
            if binding.role == "invitee" and binding.invitation_id in data["invitations"]:
                return data["invitations"][binding.invitation_id]
        return None

    def label(self, account_id: str | None, *, patient_ids: frozenset[str] = frozenset(),
              patient_name: str | None = None) -> str:
        """How a listing shows an account: "you", the patient's name (for the accounts
        that are this file's patient), the contact name, each with the short id; or the
        short id alone."""
        if not account_id:
            return ""
        if account_id == self.own_id:
            return "you"
        if patient_name and account_id in patient_ids:
            return f"{patient_name} ({short(account_id)})"
        name = self.name_of(account_id)
        return f"{name} ({short(account_id)})" if name else short(account_id)
