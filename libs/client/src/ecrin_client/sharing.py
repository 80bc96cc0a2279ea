"""Sharing a patient file: re-encryption grants, invitations, revocation and key rotation.

Everything that touches a key happens here, on the device, with ``ecrin_e2ee``:

* a **grant** re-seals the scope keys this device holds to the grantee's public identity,
  which this device must trust (:mod:`ecrin_client.trust`: verified in person with
  ``ecrin verify``, or bound by an invitation), and signs the entries; the sharing service
  records the terms, the kms stores the entries and activates the grant;
* an **invitation** wraps the scope keys and the inviter's fingerprint under a one-time
  code (Argon2id); the code is printed for the invitee and never sent. Redeeming it opens
  the keys on the invitee's device, which binds the inviter named inside, seals the keys to
  its own identity and sends a proof, keyed by the code, that its identity holds the code;
  the inviter's devices check that proof and bind the invitee;
* **sync** works through the rotations the sharing service queued after a revocation or an
  expiry: a new scope key version sealed to every remaining member this device trusts
  (the others are left out and named in :attr:`Rotated.skipped_members`), then every record
  version of that scope re-keyed by re-wrapping its content key (``POST /v1/records/rekey``);
  content and metadata ciphertexts are never touched. :func:`rotate_before_write` runs the
  same for one file before a write, so new content never uses a key a revoked member holds.

The servers see the terms (relationship, scopes, dates): a parent grant's end date is
computed here from the birth date in the encrypted identity record; the server sees only
the date.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ecrin_client import kdf_policy
from ecrin_client.encoding import b64d, b64e
from ecrin_client.errors import (
    Conflict,
    EcrinError,
    IntegrityError,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from ecrin_client.pinning import account_uuid
from ecrin_client.records import Unreadable
from ecrin_client.trust import Untrusted
from ecrin_e2ee import (
    DecryptionError,
    FormatError,
    GrantTerms,
    IdentityKeys,
    InvalidCode,
    InvitationCode,
    InvitationPayload,
    KeyringEntry,
    Member,
    Permission,
    PublicIdentity,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    create_invitation,
    grant_scope_keys,
    redeem_invitation,
    rekey_record_header,
    rotate_scope,
)

if TYPE_CHECKING:
    from ecrin_client.records import Records

__all__ = [
    "RELATIONSHIPS",
    "Accepted",
    "GrantView",
    "InvitationView",
    "Invited",
    "NotVerified",
    "RekeyStats",
    "Rotated",
    "Sharing",
    "SharingOverview",
    "eighteenth_birthday",
    "rotate_before_write",
]

RELATIONSHIPS = ("patient", "parent", "guardian", "care_team", "replacement", "secretary")
SCOPES = ("clinical", "shared", "administrative")
#: Relationships that may rotate a file's scopes, hence hand its owner new key versions.
ROTATING = frozenset({"care_team"})
READ = frozenset({Permission.READ})
APPEND = frozenset({Permission.READ, Permission.APPEND})
#: Items per POST /v1/records/rekey (the server takes up to 500, all or nothing).
REKEY_BATCH = 500
#: Headers per GET /v1/records/headers page (the server serves up to 2000).
HEADERS_PAGE = 2000


class NotVerified(InvalidInput):
    """A direct grant to an account whose key this device has not verified and pinned."""

    default_message = "verify the account first (`ecrin verify ACCOUNT`)"


def eighteenth_birthday(birth_date: dt.date) -> dt.datetime:
    """00:00 UTC on the 18th birthday (1 March for someone born on 29 February)."""
    try:
        day = birth_date.replace(year=birth_date.year + 18)
    except ValueError:
        day = dt.date(birth_date.year + 18, 3, 1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _whole(when: dt.datetime | None) -> dt.datetime | None:
    """Keyring entries carry whole seconds: the grant must say the same instant."""
    if when is None:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).replace(microsecond=0)


def _permissions(access: str) -> frozenset[Permission]:
    return APPEND if access == "append" else READ


def _parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise IntegrityError("the sharing service sent a malformed date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# -- what the commands return ---------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)  # start-up time

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class GrantView(_Out):
    grant_id: str
    file_id: str
    grantee_id: str
    granter_id: str
    relationship: str
    scopes: dict[str, str]
    kind: str
    status: str
    valid_until: dt.datetime | None = None
    created_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    #: The safety number of this device's account and the grantee's (None: no identity).
    safety_number: str | None = None
    #: Verified in person and pinned on this device.
    pinned: bool = False
    #: Why this device trusts the grantee's key: self, verified, invitation; None: it does
    #: not, and will neither seal keys to it nor accept what it signs.
    trusted: str | None = None


class InvitationView(_Out):
    invitation_id: str
    file_id: str
    relationship: str
    scopes: dict[str, str]
    status: str
    expires_at: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    redeemed_by: str | None = None
    redeemed_at: dt.datetime | None = None
    grant_id: str | None = None
    redeemer_safety_number: str | None = None
    #: The redeemer's proof checked on this device: its key is bound to this invitation.
    redeemer_bound: bool = False


class SharingOverview(_Out):
    file_id: str
    grants: list[GrantView]
    invitations: list[InvitationView]


class Invited(_Out):
    invitation_id: str
    file_id: str
    relationship: str
    scopes: dict[str, str]
    valid_until: dt.datetime | None
    expires_at: dt.datetime | None
    #: The one-time code: shown once, handed over in person, never sent to a server.
    code: str


class Accepted(_Out):
    grant_id: str
    file_id: str
    relationship: str
    scopes: dict[str, str]
    valid_until: dt.datetime | None
    inviter_id: str
    inviter_fingerprint: str
    safety_number: str


@dataclass
class RekeyStats:
    """What a re-keying did and where its time went (seconds). The three times overlap
    (pages are fetched and batches posted while others are re-wrapped), so their sum is
    more than the wall time."""

    listed: int = 0
    rekeyed: int = 0
    skipped: int = 0
    #: Of the skipped: headers that do not verify (or name another record), never re-signed.
    unreadable: list[Unreadable] = dataclasses.field(default_factory=list)
    #: Waiting for pages of headers (``GET /v1/records/headers``).
    list_s: float = 0.0
    #: On the device: parsing, verifying and re-wrapping headers.
    rewrap_s: float = 0.0
    #: Waiting for ``POST /v1/records/rekey`` answers.
    post_s: float = 0.0
    #: From the first request to the last answer.
    wall_s: float = 0.0


class Rotated(_Out):
    file_id: str
    scope: str
    reason: str
    version: int
    members: int
    rekeyed: int
    #: Versions this device could not re-key (it holds no key of their older version, or
    #: their author or re-wrapper is not trusted here).
    skipped: int = 0
    #: Members the new key was NOT sealed to, because this device cannot trust their key
    #: (run `ecrin verify ACCOUNT` and `ecrin share grant` to give them access again).
    skipped_members: list[str] = []
    #: Record versions that do not verify: left as they are and reported.
    unreadable: list[Unreadable] = []
    #: A rotation whose keys were stored earlier and whose re-keying this run finished.
    resumed: bool = False


# -- the SDK -------------------------------------------------------------------------------


class Sharing:
    """``Sharing(records)``: grants, invitations, revocation and rotations for one account."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.client = records.client
        self.identity = records.identity
        self._t = records.client.transport

    @property
    def account_id(self) -> str:
        return str(self.identity.account_id)

    async def defaults(self) -> dict[str, dict[str, str]]:
        """The scopes each relationship gets unless told otherwise (``GET /v1/grants/defaults``)."""
        body = (await self._t.request("GET", "/v1/grants/defaults")).json()
        if not isinstance(body, dict):
            raise IntegrityError("the sharing service sent malformed defaults")
        return {str(k): {str(s): str(a) for s, a in v.items()} for k, v in body.items()}

    async def terms(self, relationship: str, scopes: dict[str, str] | None) -> dict[str, str]:
        if relationship not in RELATIONSHIPS:
            raise InvalidInput(f"--as must be one of {', '.join(RELATIONSHIPS)}")
        chosen = scopes or (await self.defaults()).get(relationship)
        if not chosen:
            raise InvalidInput(f"no default scopes for {relationship}: give --scopes")
        for scope, access in chosen.items():
            if scope not in SCOPES or access not in ("read", "append"):
                raise InvalidInput("scopes are clinical, shared or administrative, each "
                                   "=read or =append")
        return dict(chosen)

    # -- keys this device holds ------------------------------------------------------------

    async def _current_keys(self, file_id: uuid.UUID, scopes: Iterable[str]) -> list[ScopeKey]:
        return [await self.records.scope_key(file_id, Scope(s)) for s in scopes]

    async def _all_versions(self, file_id: uuid.UUID, scope: Scope) -> list[ScopeKey]:
        """Every version of a scope this device can open, oldest first (so a new member
        reads records that are not re-keyed yet)."""
        latest = await self.records.scope_key(file_id, scope)
        keys = [latest]
        for version in range(latest.version - 1, 0, -1):
            try:
                keys.insert(0, await self.records.scope_key(file_id, scope, version))
            except NotFound:
                continue
        return keys

    async def _verified_identity(self, account_id: str, file_id: uuid.UUID) -> PublicIdentity:
        try:
            return await self.records.trust.identity(account_id, file_id=file_id)
        except Untrusted:
            raise NotVerified(
                f"account {account_id} is not verified on this device: compare safety "
                f"numbers in person with `ecrin verify {account_id}`, then share") from None

    # -- grants ----------------------------------------------------------------------------

    async def grant(self, file_id: str, account_id: str, relationship: str,
                    scopes: dict[str, str] | None = None,
                    valid_until: dt.datetime | None = None) -> GrantView:
        """Share with an existing account whose key this device verified (pinned)."""
        fid = uuid.UUID(account_uuid(file_id, "patient file id"))
        grantee_id = account_uuid(account_id)
        if grantee_id == self.account_id:
            raise InvalidInput("you already hold this file")
        chosen = await self.terms(relationship, scopes)
        until = _whole(valid_until)
        grantee = await self._verified_identity(grantee_id, fid)
        pinned = self.records.trust.store.recorded(grantee_id)
        await self.sync(str(fid))  # hand over the keys as they are after any pending rotation
        grant_id = str(uuid.uuid4())
        body: dict[str, Any] = {"grant_id": grant_id, "file_id": str(fid),
                                "grantee_id": grantee_id, "relationship": relationship,
                                "scopes": chosen}
        if until is not None:
            body["valid_until"] = until.isoformat()

        async def create() -> Any:
            return await self._t.request("POST", "/v1/grants", json=body, ok=(200, 201))

        created = (await self.client._retrying(create)).json()
        entries: list[KeyringEntry] = []
        for scope, access in chosen.items():
            terms = GrantTerms(Relationship(relationship), _permissions(access),
                               valid_until=until)
            entries += grant_scope_keys(await self._all_versions(fid, Scope(scope)), grantee,
                                        terms, granter=self.identity,
                                        pinned_fingerprint=pinned)

        async def store() -> Any:
            return await self._t.request(
                "POST", f"/v1/keyrings/{fid}/grants/{grant_id}", ok=(200, 201),
                json={"entries": [e.to_json() for e in entries]})

        await self.client._retrying(store)
        self.records.trust.store.granted(str(fid), grantee_id,
                                         may_grant=relationship in ROTATING)
        view = self._grant_view({**created, "status": "active"})
        return view.model_copy(update={
            "safety_number": self.identity.public_identity().safety_number(grantee),
            "pinned": self.client.profile.pinned(grantee_id) is not None,
            "trusted": self.records.trust.reason(grantee_id)})

    def _grant_view(self, raw: dict[str, Any]) -> GrantView:
        try:
            return GrantView(grant_id=str(raw["id"]), file_id=str(raw["file_id"]),
                             grantee_id=str(raw["grantee_id"]),
                             granter_id=str(raw["granter_id"]),
                             relationship=str(raw["relationship"]),
                             scopes=dict(raw["scopes"]), kind=str(raw.get("kind", "direct")),
                             status=str(raw["status"]),
                             valid_until=_parse_time(raw.get("valid_until")),
                             created_at=_parse_time(raw.get("created_at")),
                             revoked_at=_parse_time(raw.get("revoked_at")))
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("the sharing service sent a malformed grant") from None

    async def _safety(self, account_id: str | None) -> tuple[str | None, bool]:
        """The safety number to compare in person (from the directory's key, which is
        exactly what comparing it checks), and whether that key is pinned here."""
        if not account_id or account_id == self.account_id:
            return None, False
        try:
            theirs = await self.client.get_directory(account_id)
        except (NotFound, IntegrityError):
            return None, False
        return (self.identity.public_identity().safety_number(theirs),
                self.client.profile.pinned(account_id) is not None)

    async def overview(self, file_id: str) -> SharingOverview:
        """The file's grants (and, for its owner, invitations), with safety numbers."""
        fid = account_uuid(file_id, "patient file id")
        raw_grants = (await self._t.request("GET", "/v1/grants",
                                            params={"file_id": fid})).json()
        checks = {c.invitation_id: c for c in await self.records.trust.scan_invitations(fid)}
        grants = []
        for raw in raw_grants:
            view = self._grant_view(raw)
            number, pinned = await self._safety(view.grantee_id)
            grants.append(view.model_copy(update={
                "safety_number": number, "pinned": pinned,
                "trusted": self.records.trust.reason(view.grantee_id)}))
        invitations: list[InvitationView] = []
        try:
            raw_invitations = (await self._t.request("GET", "/v1/invitations",
                                                     params={"file_id": fid})).json()
        except PermissionDenied:
            raw_invitations = []  # only the owner sees invitations
        for raw in raw_invitations:
            redeemer = str(raw["redeemed_by"]) if raw.get("redeemed_by") else None
            number, _ = await self._safety(redeemer)
            invitations.append(InvitationView(
                invitation_id=str(raw["id"]), file_id=str(raw["file_id"]),
                relationship=str(raw["relationship"]), scopes=dict(raw["scopes"]),
                status=str(raw["status"]), expires_at=_parse_time(raw.get("expires_at")),
                valid_until=_parse_time(raw.get("valid_until")), redeemed_by=redeemer,
                redeemed_at=_parse_time(raw.get("redeemed_at")),
                grant_id=str(raw["grant_id"]) if raw.get("grant_id") else None,
                redeemer_safety_number=number,
                redeemer_bound=redeemer is not None and (
                    str(raw["id"]) in checks and checks[str(raw["id"])].bound
                    or self.records.trust.reason(redeemer) is not None)))
        return SharingOverview(file_id=fid, grants=grants, invitations=invitations)

    async def revoke(self, grant_or_invitation: str, *, rotate: bool = True
                     ) -> tuple[str, GrantView | None, list[Rotated]]:
        """Revoke a grant (access stops at once), then rotate its scopes from this device.

        An invitation id cancels the invitation instead. Returns (what, grant, rotations).
        """
        ref = account_uuid(grant_or_invitation, "grant id")
        before = await self._latest_versions(ref)
        try:
            raw = (await self._t.request("DELETE", f"/v1/grants/{ref}")).json()
        except NotFound:
            # A cancelled invitation someone fetched queues a rotation: the next write or
            # `ecrin sync` does it.
            await self._t.request("DELETE", f"/v1/invitations/{ref}", ok=(200, 204))
            return "invitation", None, []
        grant = self._grant_view(raw)
        if grant.grantee_id == self.account_id:  # leaving a share: the owner rotates
            return "grant", grant, []
        # Remembered here: the revoked member never receives this file's keys again from
        # this device, whatever the member list says.
        self.records.trust.store.revoked(grant.file_id, grant.grantee_id)
        if not rotate:
            return "grant", grant, []
        before.update({s: v for s, v in (await self._scope_versions(
            grant.file_id, [s for s in grant.scopes if s not in before])).items()})
        rotations = await self.sync(grant.file_id)
        # The queue is the server's word (it may call the current version "rotated"): every
        # scope of the grant ends on a key version newer than the one the member held.
        rotations = [r for r in rotations if r.version > before.get(r.scope, 0)]
        done = {r.scope for r in rotations}
        for scope in sorted(set(grant.scopes) - done):
            rotations.append(await self.rotate(grant.file_id, scope, reason="revoked"))
        return "grant", grant, rotations

    async def _latest_versions(self, grant_id: str) -> dict[str, int]:
        """Before a revocation: the latest key version of each scope of the grant, as this
        device's verified keyring shows it (empty for an invitation or a grant it cannot
        see: the revocation then rotates every scope of the grant)."""
        try:
            raw = (await self._t.request("GET", f"/v1/grants/{grant_id}")).json()
            grant = self._grant_view(raw)
        except (NotFound, PermissionDenied, IntegrityError):
            return {}
        if grant.grantee_id == self.account_id:
            return {}
        return await self._scope_versions(grant.file_id, list(grant.scopes))

    async def _scope_versions(self, file_id: str, scopes: list[str]) -> dict[str, int]:
        fid = uuid.UUID(file_id)
        versions: dict[str, int] = {}
        for scope in scopes:
            try:
                versions[scope] = (await self.records.scope_key(fid, Scope(scope))).version
            except NotFound:
                continue
        return versions

    # -- invitations -------------------------------------------------------------------------

    async def invite(self, file_id: str, relationship: str,
                     scopes: dict[str, str] | None = None,
                     valid_until: dt.datetime | None = None,
                     expires_in_days: int = 14) -> Invited:
        """Wrap the current scope keys under a fresh one-time code; upload only the wrap."""
        fid = uuid.UUID(account_uuid(file_id, "patient file id"))
        chosen = await self.terms(relationship, scopes)
        until = _whole(valid_until)
        # A pending rotation first: an invitation made now would carry keys that the
        # rotation is about to replace, and could then never be redeemed.
        await self.sync(str(fid))
        keys = await self._current_keys(fid, chosen)
        code, payload, verifier = await asyncio.to_thread(
            create_invitation, keys, inviter=self.identity, params=kdf_policy.default_params())
        invitation_id = str(uuid.uuid4())
        body: dict[str, Any] = {"invitation_id": invitation_id, "file_id": str(fid),
                                "lookup_id": code.lookup_id(), "relationship": relationship,
                                "scopes": chosen, "expires_in_days": expires_in_days,
                                "payload": payload.to_json(), "verifier": verifier.to_json()}
        if until is not None:
            body["valid_until"] = until.isoformat()
        # Recorded before it is sent: only invitations made here re-admit a revoked account.
        self.records.trust.store.made_invitation(str(fid), invitation_id)

        async def send() -> Any:
            return await self._t.request("POST", "/v1/invitations", json=body, ok=(200, 201))

        created = (await self.client._retrying(send)).json()
        return Invited(invitation_id=invitation_id, file_id=str(fid), relationship=relationship,
                       scopes=chosen, valid_until=until,
                       expires_at=_parse_time(created.get("expires_at")), code=code.to_text())

    async def accept(self, code_text: str) -> Accepted:
        """Redeem a code: look it up, open the keys here, claim the grant, seal to myself."""
        try:
            code = InvitationCode.from_text(code_text)
        except InvalidCode as exc:
            raise InvalidInput(f"not a valid invitation code: {exc}") from None
        found = (await self._t.request("GET", f"/v1/invitations/lookup/{code.lookup_id()}")
                 ).json()
        try:
            payload = InvitationPayload.from_json(found["payload"])
            invitation_id, file_id = str(found["id"]), uuid.UUID(str(found["file_id"]))
            relationship = Relationship(str(found["relationship"]))
            scopes: dict[str, str] = {str(k): str(v) for k, v in found["scopes"].items()}
            inviter_id = str(found["inviter_id"])
        except (KeyError, TypeError, ValueError, FormatError):
            raise IntegrityError("the sharing service sent a malformed invitation") from None
        if not payload.params.within_ceiling():
            raise IntegrityError("the invitation asks for key-derivation parameters above what "
                                 "this client accepts: refusing it")
        me = self.identity.public_identity()
        try:
            redeemed = await asyncio.to_thread(redeem_invitation, code, payload, me)
        except DecryptionError:
            raise IntegrityError("the invitation does not open with this code: it was "
                                 "altered on the server") from None
        keys = redeemed.scope_keys
        if (payload.file_id != file_id or any(k.file_id != file_id for k in keys)
                or sorted(k.scope.value for k in keys) != sorted(scopes)):
            raise IntegrityError("the invitation's keys do not match its terms")
        if str(redeemed.inviter_id) != inviter_id:
            raise IntegrityError("the server names another inviter than the invitation does")
        # The inviter's key is the one named inside what the code opened, whatever the
        # directory would like this device to believe: bound before anything is sent.
        inviter = await self.client._directory_identity(inviter_id)
        self.records.trust.bind_inviter(inviter, redeemed.inviter_fingerprint,
                                        file_id=str(file_id), invitation_id=invitation_id)
        grant = (await self._t.request("POST", f"/v1/invitations/{invitation_id}/redeem",
                                       json={"lookup_id": code.lookup_id(),
                                             "proof": b64e(redeemed.proof)})).json()
        valid_until = _parse_time(grant.get("valid_until"))
        entries: list[KeyringEntry] = []
        for key in keys:
            terms = GrantTerms(relationship, _permissions(scopes[key.scope.value]),
                               valid_until=valid_until)
            entries += grant_scope_keys([key], me, terms, granter=self.identity)
        try:
            await self._t.request("POST", f"/v1/keyrings/{file_id}/grants/{grant['id']}",
                                  ok=(200, 201),
                                  json={"entries": [e.to_json() for e in entries]})
        except InvalidInput as error:
            raise Conflict(
                "the invitation's keys are older than the file's current keys (a key rotation "
                "happened after it was made): ask the practitioner for a new invitation"
            ) from error
        return Accepted(grant_id=str(grant["id"]), file_id=str(file_id),
                        relationship=relationship.value, scopes=scopes,
                        valid_until=valid_until, inviter_id=inviter_id,
                        inviter_fingerprint=inviter.fingerprint_hex(),
                        safety_number=me.safety_number(inviter))

    # -- rotations -----------------------------------------------------------------------------

    async def pending(self, file_id: str | None = None) -> list[dict[str, Any]]:
        params = {"file_id": account_uuid(file_id, "patient file id")} if file_id else None
        body = (await self._t.request("GET", "/v1/rotations", params=params)).json()
        if not isinstance(body, list):
            raise IntegrityError("the sharing service sent a malformed rotation queue")
        return body

    async def sync(self, file_id: str | None = None) -> list[Rotated]:
        """Do every pending rotation this account may do (all files, or one). A rotation
        whose keys are stored but whose re-keying was interrupted is finished, not redone."""
        queued: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item in await self.pending(file_id):
            queued.setdefault((str(item["file_id"]), str(item["scope"])), []).append(item)
        done: list[Rotated] = []
        for (fid, scope), items in queued.items():
            reason = str(items[0].get("reason", ""))
            stored = [v for i in items if isinstance(v := i.get("rotated_version"), int)]
            if len(stored) == len(items):  # keys stored, re-keying unfinished
                done.append(await self.finish(fid, scope, max(stored), reason=reason))
            else:  # someone lost access since the last rotation: a new version
                done.append(await self.rotate(fid, scope, reason=reason))
        return done

    async def finish(self, file_id: str, scope: str, stored: int, *,
                     reason: str = "") -> Rotated:
        """Re-key a scope to the key version a rotation stored, then mark it done."""
        fid = uuid.UUID(account_uuid(file_id, "patient file id"))
        latest = await self.records.scope_key(fid, Scope(scope))
        if latest.version < stored:
            return await self.rotate(file_id, scope, reason=reason)
        stats = RekeyStats()
        rekeyed, skipped = await self.rekey(fid, Scope(scope), latest, stats=stats)
        await self._done(fid, scope, latest.version)
        return Rotated(file_id=str(fid), scope=scope, reason=reason, version=latest.version,
                       members=0, rekeyed=rekeyed, skipped=skipped,
                       unreadable=stats.unreadable, resumed=True)

    async def _done(self, fid: uuid.UUID, scope: str, version: int) -> None:
        """Every record this device could re-key is on ``version``: the rotation is done."""
        await self._t.request("POST", f"/v1/rotations/{fid}/{scope}/done",
                              json={"version": version})

    async def _members(self, fid: uuid.UUID, scope: str) -> tuple[list[Member], list[str]]:
        """The scope's members as the sharing service lists them, kept only where this
        device trusts their key. -> (members to seal to, account ids left out)"""
        raw = (await self._t.request("GET", f"/v1/files/{fid}/members")).json()
        members: list[Member] = []
        skipped: list[str] = []
        for m in raw:
            access = (m.get("scopes") or {}).get(scope)
            if access is None:
                continue
            account = uuid.UUID(str(m["account_id"]))
            if self.records.trust.store.is_revoked(str(fid), str(account)):
                skipped.append(str(account))  # revoked here: listed again by the server
                continue
            try:
                identity = await self.records.trust.identity(account, file_id=fid,
                                                             use="receive the new keys")
            except IntegrityError:  # untrusted, or its key changed: never sealed to
                skipped.append(str(account))
                continue
            terms = GrantTerms(Relationship(str(m["relationship"])), _permissions(access),
                               valid_from=_whole(_parse_time(m.get("valid_from"))),
                               valid_until=_whole(_parse_time(m.get("valid_until"))))
            members.append(Member(identity, terms))
        if not any(m.identity.account_id == self.identity.account_id for m in members):
            raise PermissionDenied("this account is not a member of the scope it would rotate")
        return members, skipped

    async def rotate(self, file_id: str, scope: str, *, reason: str = "",
                     stats: RekeyStats | None = None) -> Rotated:
        """A new version of one scope for the remaining members, then re-key its records
        (``stats``, when given, is filled in by the re-keying)."""
        fid = uuid.UUID(account_uuid(file_id, "patient file id"))
        current = await self.records.scope_key(fid, Scope(scope))
        members, left_out = await self._members(fid, scope)
        rotation = rotate_scope(current, members, granter=self.identity)
        await self._t.request("POST", f"/v1/keyrings/{fid}/entries", ok=(200, 201),
                              json={"entries": [e.to_json() for e in rotation.entries]})
        self.records.adopt_keys({Scope(scope): rotation.scope_key})
        stats = stats if stats is not None else RekeyStats()
        rekeyed, skipped = await self.rekey(fid, Scope(scope), rotation.scope_key, stats=stats)
        # Only now is the rotation done: an interrupted re-keying stays pending, and the
        # next sync finishes it (a revoked member's old key never keeps opening records).
        await self._done(fid, scope, rotation.scope_key.version)
        return Rotated(file_id=str(fid), scope=scope, reason=reason,
                       version=rotation.scope_key.version, members=len(members),
                       rekeyed=rekeyed, skipped=skipped, skipped_members=left_out,
                       unreadable=stats.unreadable)

    async def rekey(self, fid: uuid.UUID, scope: Scope, new_key: ScopeKey, *,
                    stats: RekeyStats | None = None) -> tuple[int, int]:
        """Re-wrap the content key of every committed version of the scope's records that
        is on an older key version. -> (re-keyed, skipped)

        Each header is checked before it is re-signed: it names the record, version, file
        and scope it was listed as, its author and wrap signatures verify against the
        directory identities (pinned where pinned), and its content key unwraps and matches
        the author's commitment. Metadata and content are neither fetched nor decrypted.
        The server checks that the author-signed core is unchanged.

        Three things overlap: the next page of headers is fetched while this one is
        re-wrapped (in a worker thread), and each batch is posted while the next is
        re-wrapped. One batch is in flight at a time; each is all or nothing on the server
        and a retry of a batch already applied changes nothing. A failure stops the
        re-keying after the batch in flight has been answered."""
        stats = stats if stats is not None else RekeyStats()
        began = time.perf_counter()
        params: dict[str, Any] = {"file_id": str(fid), "scope": scope.value,
                                  "below_key_version": new_key.version, "limit": HEADERS_PAGE}
        rekeyed = skipped = 0
        fetching: asyncio.Task[tuple[list[Any], str | None]] | None = asyncio.create_task(
            self._header_page(params, stats))
        posting: asyncio.Task[None] | None = None
        try:
            while fetching is not None:
                items, cursor = await fetching
                fetching = None
                if cursor:
                    fetching = asyncio.create_task(
                        self._header_page({**params, "cursor": cursor}, stats))
                started = time.perf_counter()
                jobs, missing = await self._rekey_jobs(fid, scope, new_key, items, stats)
                stats.rewrap_s += time.perf_counter() - started
                skipped += missing
                for first in range(0, len(jobs), REKEY_BATCH):
                    started = time.perf_counter()
                    batch, failed = await asyncio.to_thread(
                        _rewrap, jobs[first:first + REKEY_BATCH], new_key, self.identity)
                    stats.rewrap_s += time.perf_counter() - started
                    stats.unreadable += failed
                    skipped += len(failed)
                    if not batch:
                        continue
                    if posting is not None:
                        await posting
                    posting = asyncio.create_task(self._post_rekey(batch, stats))
                    rekeyed += len(batch)
            if posting is not None:
                await posting
        except BaseException as error:
            # Stop fetching. The batch in flight was verified: let it land (or fail) rather
            # than leave its outcome unknown, unless this task itself is being cancelled.
            # Collect every outcome so that no task is left behind.
            if fetching is not None:
                fetching.cancel()
            if posting is not None and not isinstance(error, Exception):
                posting.cancel()
            await asyncio.gather(*(t for t in (fetching, posting) if t is not None),
                                 return_exceptions=True)
            raise
        stats.rekeyed, stats.skipped = rekeyed, skipped
        stats.wall_s = time.perf_counter() - began
        return rekeyed, skipped

    async def _header_page(self, params: dict[str, Any], stats: RekeyStats
                           ) -> tuple[list[Any], str | None]:
        """One page of ``GET /v1/records/headers``: (items, next cursor)."""
        started = time.perf_counter()
        page = (await self.client._retrying(lambda: self._t.request(
            "GET", "/v1/records/headers", params=params))).json()
        stats.list_s += time.perf_counter() - started
        items = page.get("items") if isinstance(page, dict) else None
        cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if not isinstance(items, list) or not isinstance(cursor, str | None):
            raise IntegrityError("the server sent a malformed list of record headers")
        stats.listed += len(items)
        return items, cursor

    async def _rekey_jobs(self, fid: uuid.UUID, scope: Scope, new_key: ScopeKey,
                          items: list[Any], stats: RekeyStats
                          ) -> tuple[list[_RekeyJob], int]:
        """Parse the listed headers and fetch what re-keying them needs (the old key
        versions, the author and wrapper identities; cached after the first).
        -> (jobs, how many this device cannot re-key: no key of their version)"""
        jobs: list[_RekeyJob] = []
        skipped = 0
        for raw in items:
            try:
                record_id = uuid.UUID(str(raw["record_id"]))
                version = int(raw["version"])
                header = RecordHeader.from_bytes(b64d(str(raw["header"]), what="header"))
            except (KeyError, TypeError, ValueError, DecryptionError, EcrinError):
                raise IntegrityError("the server sent a malformed record header") from None
            if (header.record_id, header.record_version, header.file_id,
                    header.scope) != (record_id, version, fid, scope):
                skipped += 1
                stats.unreadable.append(Unreadable(
                    record_id=str(record_id), version=version,
                    author_id=str(header.author_id),
                    reason="its header names another record, version, file or scope"))
                continue
            if header.key_version >= new_key.version:
                continue
            try:
                old_key = await self.records.scope_key(fid, scope, header.key_version)
            except NotFound:  # a version older than this device's membership
                skipped += 1
                continue
            try:
                author = await self.records.identity_of(header.author_id, fid)
                wrapper = await self.records.identity_of(header.wrapper_id, fid)
            except IntegrityError:  # a signer this device cannot trust: never re-signed
                skipped += 1
                continue
            jobs.append(_RekeyJob(header, old_key, author, wrapper))
        return jobs, skipped

    async def _post_rekey(self, batch: list[dict[str, Any]], stats: RekeyStats) -> None:
        started = time.perf_counter()
        # A batch is all or nothing and applying it twice changes nothing: a busy server's
        # 503 is waited out as it says (Retry-After), not turned into a revocation left
        # to `sync`.
        await self.client._retrying(lambda: self._t.request(
            "POST", "/v1/records/rekey", json={"items": batch}))
        stats.post_s += time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class _RekeyJob:
    header: RecordHeader
    old_key: ScopeKey
    author: PublicIdentity
    wrapper: PublicIdentity


def _rewrap(jobs: list[_RekeyJob], new_key: ScopeKey, signer: IdentityKeys
            ) -> tuple[list[dict[str, Any]], list[Unreadable]]:
    """Worker thread: verify each header, then re-wrap its content key under ``new_key``
    and sign the new wrap. A header that does not verify or open is never re-signed.
    -> (``POST /v1/records/rekey`` items, the headers refused)"""
    out = []
    failed = []
    for job in jobs:
        try:
            job.header.verify(job.author, job.wrapper)
            header = rekey_record_header(job.header, job.old_key, new_key, signer)
        except DecryptionError:
            failed.append(Unreadable(
                record_id=str(job.header.record_id), version=job.header.record_version,
                author_id=str(job.header.author_id),
                reason="its header does not verify or does not open with its scope key"))
            continue
        out.append({"record_id": str(header.record_id), "version": header.record_version,
                    "header": b64e(header.to_bytes())})
    return out, failed


async def rotate_before_write(records: Records, file_id: str | uuid.UUID) -> list[Rotated]:
    """Hook for writers: finish a file's pending rotations so new content never uses a key
    a revoked or expired member still holds. Cheap when nothing is pending (one request),
    and a no-op for members who may not rotate (the queue is empty for them)."""
    return await Sharing(records).sync(str(file_id))
