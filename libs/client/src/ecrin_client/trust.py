"""The one place where a device decides whose public key it uses.

A device uses a public identity — to seal scope keys to it, to accept a keyring entry it
signed, to accept a record's author or wrapper signature — only when its own records say
why (``docs/protocol.md``, trust):

1. ``self``: it is this device's own account;
2. ``verified``: the user compared safety numbers in person (``ecrin verify``) and pinned it;
3. ``invitation``: an invitation bound it on this device. The invitee's device binds the
   inviter named *inside* the payload it opened with the code; the inviter's devices bind
   the account that redeemed once its proof, keyed by the code, checks with the verifier
   the inviter's own account made (so any of the inviter's devices can check it).

Nothing a server serves — a member list, a directory entry, a newer key version, a keyring
entry — is trusted by itself: an identity without a reason is refused with
:class:`Untrusted` (exit code 7), which names the account and says how to fix it. A key
that differs from the one recorded is :class:`IdentityMismatch`, refused just as loudly.

Trust is per file where the reason is: an invitation binds an account for the file of that
invitation only. Keyring entries ask more: their granter must also be *entitled* to hand
this device keys of that file — this account itself; the inviter bound for that very file;
or, verified in person, an account this device granted a rotating role on a file it owns, or
the first verified account that handed this device the keys of a file it does not own (the
owner who shared it). An account this device invited is trusted as an author, never as a
granter. Members this device revoked from a file never receive its keys again from this
device, whatever the member list says, until this device grants or invites them again.

Records live in the profile: ``pins.json`` (self and verified, as before), ``bindings.json``
(account id → fingerprint and the invitations that bound it) and ``files.json`` (per file:
owned here, the accounts entitled to grant it, the accounts revoked from it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ecrin_client import ids
from ecrin_client.encoding import b64d
from ecrin_client.errors import (
    EcrinError,
    IdentityMismatch,
    IntegrityError,
    NotFound,
    PermissionDenied,
)
from ecrin_client.pinning import compact, grouped
from ecrin_e2ee import (
    DecryptionError,
    FormatError,
    IdentityKeys,
    InvitationVerifier,
    KeyringEntry,
    PublicIdentity,
    Relationship,
    check_redemption,
    open_entry,
)

if TYPE_CHECKING:
    from ecrin_client.client import EcrinClient
    from ecrin_client.profile import Profile

__all__ = ["Binding", "InviteeCheck", "Trust", "TrustStore", "Untrusted", "Why"]

BINDINGS = "bindings.json"
FILES = "files.json"


class Why(StrEnum):
    """Why this device trusts an identity."""

    SELF = "self"
    VERIFIED = "verified"
    INVITATION = "invitation"


class Untrusted(IntegrityError):
    """An identity this device has no reason to trust: never used, always named."""

    def __init__(self, account_id: str, use: str = "use its key") -> None:
        super().__init__(
            f"account {account_id} is not verified on this device, so it will not {use}. "
            f"Compare safety numbers in person with `ecrin verify {account_id}`, then retry")
        self.account_id = account_id


@dataclass(frozen=True, slots=True)
class Binding:
    """An invitation that bound ``account_id``'s key on this device, for one patient file.

    ``role`` is what the bound account was in it: ``inviter`` (it invited this account) or
    ``invitee`` (this account invited it and checked its proof)."""

    account_id: str
    fingerprint: str
    file_id: str
    role: str
    invitation_id: str

    def to_json(self) -> dict[str, str]:
        return {"file_id": self.file_id, "role": self.role, "invitation_id": self.invitation_id}


@dataclass(frozen=True, slots=True)
class InviteeCheck:
    """The outcome of checking one redeemed invitation's proof on the inviter's device."""

    invitation_id: str
    account_id: str
    bound: bool


class TrustStore:
    """What this device has recorded: pins (self, verified) and invitation bindings."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile

    def _bindings(self) -> dict[str, dict[str, Any]]:
        raw = self.profile._read(BINDINGS)
        return raw if isinstance(raw, dict) else {}

    def bindings(self, account_id: str) -> list[Binding]:
        entry = self._bindings().get(account_id)
        if not isinstance(entry, dict):
            return []
        fingerprint = str(entry.get("fingerprint", ""))
        return [Binding(account_id, fingerprint, str(b.get("file_id")), str(b.get("role")),
                        str(b.get("invitation_id")))
                for b in entry.get("invitations", []) if isinstance(b, dict)]

    def known_accounts(self) -> set[str]:
        """Every account this device recorded: pinned, bound by an invitation, shared with
        or revoked from here. What a short account id is resolved against (``ids``)."""
        known = set(self.profile.pins()) | set(self._bindings())
        for entry in self._files().values():
            if isinstance(entry, dict):
                for key in ("granters", "revoked"):
                    known.update(str(a) for a in entry.get(key, []) or [])
        return known

    def expand_account(self, text: str) -> str:
        """An account id as typed, or the one known account (:meth:`known_accounts`) whose
        id starts with it; a short id this device does not know: give the whole id."""
        try:
            return ids.expand(text, self.known_accounts, "account")
        except NotFound:
            raise NotFound(f"no account this device knows (pinned, bound by an invitation, "
                           f"shared with from here) has an id starting with {text.strip()!r}: "
                           "give the whole account id") from None

    def recorded(self, account_id: str) -> str | None:
        """The fingerprint this device recorded for the account (pinned or bound)."""
        pinned = self.profile.pinned(account_id)
        if pinned is not None:
            return compact(pinned)
        entry = self._bindings().get(account_id)
        if isinstance(entry, dict) and entry.get("fingerprint"):
            return compact(str(entry["fingerprint"]))
        return None

    def reason(self, account_id: str, own_id: str, file_id: str | None = None) -> Why | None:
        """Why this device trusts the account; an invitation counts for its own file only
        (for any file when ``file_id`` is None: a display, not a use)."""
        if account_id == own_id:
            return Why.SELF
        if self.profile.pinned(account_id) is not None:
            return Why.VERIFIED
        if any(file_id is None or b.file_id == file_id for b in self.bindings(account_id)):
            return Why.INVITATION
        return None

    # -- per file: owned here, who may grant it, who was revoked from it --------------------

    def _files(self) -> dict[str, dict[str, Any]]:
        raw = self.profile._read(FILES)
        return raw if isinstance(raw, dict) else {}

    def file(self, file_id: str) -> dict[str, Any]:
        entry = self._files().get(file_id)
        return entry if isinstance(entry, dict) else {}

    def _update_file(self, file_id: str, *, owned: bool | None = None,
                     add: dict[str, str] | None = None,
                     remove: dict[str, str] | None = None) -> None:
        data = self._files()
        entry = data.setdefault(file_id, {})
        before = json.dumps(entry, sort_keys=True)
        if owned is not None:
            entry["owned"] = owned
        for key, account in (add or {}).items():
            members = entry.setdefault(key, [])
            if account not in members:
                members.append(account)
        for key, account in (remove or {}).items():
            if account in entry.get(key, []):
                entry[key].remove(account)
        if json.dumps(entry, sort_keys=True) != before:
            self.profile._write(FILES, data)

    def own_file(self, file_id: str) -> None:
        self._update_file(file_id, owned=True)

    def granted(self, file_id: str, account_id: str, *, may_grant: bool) -> None:
        """This device shared the file with the account (again): no longer revoked; a
        rotating role (care team) may hand this device new key versions of it."""
        self._update_file(file_id, add={"granters": account_id} if may_grant else None,
                          remove={"revoked": account_id})

    def revoked(self, file_id: str, account_id: str) -> None:
        self._update_file(file_id, add={"revoked": account_id},
                          remove={"granters": account_id})
        # Only an invitation this device makes from now on may bring the account back.
        data = self._files()
        entry = data.setdefault(file_id, {})
        entry.setdefault("revoked_after", {})[account_id] = len(entry.get("made", []))
        self.profile._write(FILES, data)

    def made_invitation(self, file_id: str, invitation_id: str) -> None:
        """This device created an invitation to the file (its id is chosen here)."""
        self._update_file(file_id, add={"made": invitation_id})

    def reinvited(self, file_id: str, account_id: str, invitation_id: str) -> bool:
        """Was the account, revoked from the file, invited again by this device since?"""
        entry = self.file(file_id)
        made = entry.get("made", [])
        since = int(entry.get("revoked_after", {}).get(account_id, len(made)))
        return invitation_id in made[since:]

    def is_revoked(self, file_id: str, account_id: str) -> bool:
        return account_id in self.file(file_id).get("revoked", [])

    def first_granter(self, file_id: str, account_id: str) -> bool:
        """A file this device does not own: the first verified account that hands it the
        file's keys is its owner's (who shared it); later ones must be the same."""
        entry = self.file(file_id)
        if entry.get("owned"):
            return False
        granters = entry.get("granters", [])
        if not granters:
            self._update_file(file_id, add={"granters": account_id})
            return True
        return account_id in granters

    def bind(self, binding: Binding) -> None:
        """Record an invitation binding; a different key for the same account is refused."""
        digits = compact(binding.fingerprint)
        recorded = self.recorded(binding.account_id)
        if recorded is not None and recorded != digits:
            raise IdentityMismatch(
                f"account {binding.account_id} is recorded on this device with another key: "
                f"refusing the key the invitation names. Run `ecrin verify "
                f"{binding.account_id}` in person")
        data = self._bindings()
        entry = data.setdefault(binding.account_id,
                                {"fingerprint": grouped(digits), "invitations": []})
        if binding.to_json() not in entry["invitations"]:
            entry["invitations"].append(binding.to_json())
            self.profile._write(BINDINGS, data)
            # Invited again after a revocation — by an invitation this device made since;
            # not an old invitation bound late, which would undo the revocation.
            if binding.role == "invitee" and self.reinvited(
                    binding.file_id, binding.account_id, binding.invitation_id):
                self._update_file(binding.file_id, remove={"revoked": binding.account_id})


class Trust:
    """The rule, for one unlocked account in one session: ``Trust(client, identity_keys)``.

    Every use of another account's public key goes through :meth:`identity` (authors,
    wrappers, grantees, members to seal to) or :meth:`granter` (keyring entries)."""

    def __init__(self, client: EcrinClient, identity: IdentityKeys) -> None:
        self.client = client
        self.keys = identity
        self.own_id = str(identity.account_id)
        self.store = TrustStore(client.profile)
        self._checked: dict[str, PublicIdentity] = {self.own_id: identity.public_identity()}
        self._scanned: set[str] = set()
        self._ownership_checked: set[str] = set()

    def reason(self, account_id: str | uuid.UUID,
               file_id: str | uuid.UUID | None = None) -> Why | None:
        return self.store.reason(str(account_id), self.own_id,
                                 str(file_id) if file_id is not None else None)

    async def identity(self, account_id: str | uuid.UUID, *,
                       file_id: str | uuid.UUID | None = None,
                       use: str = "use its key") -> PublicIdentity:
        """The account's identity from the directory, only if this device trusts it."""
        account = str(account_id)
        if self.reason(account, file_id) is None and file_id is not None:
            await self.scan_invitations(str(file_id))
        if self.reason(account, file_id) is None:
            raise Untrusted(account, use)
        if account in self._checked:
            return self._checked[account]
        identity = await self.client.get_directory(account)  # refuses a changed pinned key
        recorded = self.store.recorded(account)
        if recorded is None or identity.fingerprint().hex() != recorded:
            raise IdentityMismatch(
                f"the public key of account {account} CHANGED since this device trusted it: "
                f"refusing to use it. Compare safety numbers in person again (`ecrin verify "
                f"{account}`) before trusting it")
        self._checked[account] = identity
        return identity

    def entitled(self, account_id: str | uuid.UUID, file_id: str | uuid.UUID) -> bool:
        """May this account hand this device keys of ``file_id``?"""
        account, file = str(account_id), str(file_id)
        why = self.reason(account, file)
        if why is Why.SELF:
            return True
        if any(b.role == "inviter" and b.file_id == file for b in self.store.bindings(account)):
            return True
        if why is not Why.VERIFIED or self.store.is_revoked(file, account):
            return False
        return (account in self.store.file(file).get("granters", [])
                or self.store.first_granter(file, account))

    async def granter(self, account_id: str | uuid.UUID, file_id: str | uuid.UUID,
                      scope: str | None = None) -> PublicIdentity:
        """The identity a keyring entry of ``file_id`` is accepted from, or :class:`Untrusted`."""
        identity = await self.identity(account_id, use="accept keys it signed")
        if str(account_id) != self.own_id and scope is not None:
            await self.learn_ownership(str(file_id), scope)
        if not self.entitled(account_id, file_id):
            raise Untrusted(str(account_id), "accept keys it signed for this patient file")
        return identity

    async def learn_ownership(self, file_id: str, scope: str) -> None:
        """Before another account's key version of a file is accepted on a device that has
        not recorded the file as its own (a second computer, a new profile, the browser):
        the file is this account's when its keyring holds a first key version this account
        signed for itself — only the file's creator has one, and no server can forge it.
        Then no colleague becomes the file's "first granter" (docs/protocol.md §17)."""
        if file_id in self._ownership_checked or self.store.file(file_id).get("owned"):
            return
        self._ownership_checked.add(file_id)
        try:
            body = (await self.client.transport.request(
                "GET", f"/v1/keyrings/{file_id}/entries",
                params={"scope": scope, "version": 1})).json()
        except (PermissionDenied, NotFound):
            return  # a member added after version 1: nothing to learn
        own = self._checked[self.own_id]
        for raw in body.get("entries", []) if isinstance(body, dict) else []:
            try:
                entry = KeyringEntry.from_json(raw)
                # An invitee also seals its keys to itself (accept): only the creator's
                # own entries say "owner".
                if (str(entry.file_id), entry.version, str(entry.granter_id),
                        entry.relationship) != (file_id, 1, self.own_id, Relationship.OWNER):
                    continue
                open_entry(entry, self.keys, own)
            except (FormatError, DecryptionError, ValueError, TypeError):
                continue
            self.store.own_file(file_id)
            return

    # -- invitations ---------------------------------------------------------------------

    def bind_inviter(self, inviter: PublicIdentity, fingerprint: bytes, *, file_id: str,
                     invitation_id: str) -> None:
        """On the invitee's device: the inviter named inside the opened payload."""
        if inviter.fingerprint() != fingerprint:
            raise IdentityMismatch(
                f"the directory serves another key for account {inviter.account_id} than the "
                "invitation names: refusing the invitation (the server substituted it)")
        self.store.bind(Binding(str(inviter.account_id), inviter.fingerprint_hex(),
                                file_id, "inviter", invitation_id))

    async def scan_invitations(self, file_id: str) -> list[InviteeCheck]:
        """On the inviter's devices: bind every account whose redemption proof checks.

        Done once per file and session, and only where this account made invitations (the
        sharing service shows them to the file's owner alone)."""
        if file_id in self._scanned:
            return []
        self._scanned.add(file_id)
        try:
            listed = (await self.client.transport.request(
                "GET", "/v1/invitations", params={"file_id": file_id})).json()
        except (PermissionDenied, NotFound):
            return []
        if not isinstance(listed, list):
            raise IntegrityError("the sharing service sent a malformed invitation list")
        return [await self._check_invitee(file_id, raw) for raw in listed
                if isinstance(raw, dict) and raw.get("redeemed_by")
                and str(raw.get("inviter_id")) == self.own_id]

    async def _check_invitee(self, file_id: str, raw: dict[str, Any]) -> InviteeCheck:
        invitation_id, account = str(raw.get("id")), str(raw.get("redeemed_by"))
        try:
            verifier = InvitationVerifier.from_json(raw["verifier"])
            proof = b64d(str(raw["redemption_proof"]), what="redemption proof")
            redeemer = await self.client._directory_identity(account)
            check_redemption(verifier, self.keys, lookup_id=str(raw["lookup_id"]),
                             file_id=uuid.UUID(file_id), redeemer=redeemer, proof=proof)
            self.store.bind(Binding(account, redeemer.fingerprint_hex(), file_id, "invitee",
                                    invitation_id))
        except (KeyError, TypeError, ValueError, FormatError, DecryptionError, EcrinError):
            # No proof, a proof that does not check, a key the server substituted: this
            # account stays unverified (reported by `ecrin share list` and rotations).
            return InviteeCheck(invitation_id, account, False)
        return InviteeCheck(invitation_id, account, True)
