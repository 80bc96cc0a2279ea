"""Grants, their revocation and expiry, and the rotations those leave to do."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_platform.audit import AuditLog
from ecrin_platform.problems import Conflict, Forbidden, NotFound, ServiceError
from sharing.files.repository import live_grant
from sharing.grants.rules import check_terms
from sharing.grants.schemas import (
    GrantCreate,
    GrantOut,
    InvitationCreate,
    InvitationLookupOut,
    InvitationOut,
    MemberOut,
    RotationOut,
)
from sharing.models import Grant, Invitation, PatientFile, Rotation

GRANTORS = frozenset({"owner"})
ROTATORS = frozenset({"owner", "care_team"})


class InvitationStale(ServiceError):
    status, slug, title = 409, "invitation-stale", "Invitation made before a key rotation"


class InvitationUnavailable(ServiceError):
    status, slug, title = 404, "invitation-unavailable", "No such invitation"


class RotationNotCurrent(ServiceError):
    status, slug, title = 409, "rotation-not-current", "Not the current key version"


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def grant_out(g: Grant) -> GrantOut:
    return GrantOut(id=g.id, file_id=g.file_id, grantee_id=g.grantee_id, granter_id=g.granter_id,
                    relationship=g.relationship, scopes=g.scopes, kind=g.kind, status=g.status,
                    valid_from=aware(g.valid_from), valid_until=aware(g.valid_until),
                    created_at=aware(g.created_at), revoked_at=aware(g.revoked_at))  # type: ignore[arg-type]


def invitation_out(i: Invitation, now: datetime) -> InvitationOut:
    if i.cancelled_at:
        status = "cancelled"
    elif i.redeemed_at:
        status = "redeemed"
    elif aware(i.expires_at) <= now:  # type: ignore[operator]
        status = "expired"
    else:
        status = "pending"
    return InvitationOut(id=i.id, file_id=i.file_id, inviter_id=i.inviter_id,
                         relationship=i.relationship, scopes=i.scopes,
                         valid_until=aware(i.valid_until), created_at=aware(i.created_at),  # type: ignore[arg-type]
                         expires_at=aware(i.expires_at), status=status,  # type: ignore[arg-type]
                         redeemed_by=i.redeemed_by, redeemed_at=aware(i.redeemed_at),
                         grant_id=i.grant_id, lookup_id=i.lookup_id, verifier=i.verifier,
                         redemption_proof=i.redemption_proof)


def _plain(scopes: dict[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in scopes.items()}


class GrantsService:
    def __init__(self, session: AsyncSession, now: datetime, audit: AuditLog) -> None:
        self.session = session
        self.now = now
        self.audit = audit
        #: Files whose access answers changed in this transaction (a grant ended, a
        #: rotation queued, stored or done): told to the records API and the kms once it
        #: commits (``sharing.notify``).
        self.changed: set[uuid.UUID] = set()

    async def _my_grant(self, file_id: uuid.UUID, account: uuid.UUID) -> Grant:
        row = (await self.session.execute(
            select(Grant).join(PatientFile, PatientFile.id == Grant.file_id)
            .where(Grant.file_id == file_id, Grant.grantee_id == account, live_grant(self.now),
                   PatientFile.state == "active", PatientFile.deleted_at.is_(None))
            .limit(1))).scalar_one_or_none()
        if row is None:
            raise NotFound("No such file.")
        return row

    async def _log(self, file_id: uuid.UUID, actor: uuid.UUID, action: str,
                   target: uuid.UUID | str, outcome: str = "ok") -> None:
        await self.audit.append(self.session, chain=f"file:{file_id}", actor=actor,
                                action=action, target=target, outcome=outcome, when=self.now)

    # -- grants -------------------------------------------------------------------------------

    async def create(self, granter: uuid.UUID, body: GrantCreate) -> tuple[GrantOut, bool]:
        mine = await self._my_grant(body.file_id, granter)
        if mine.relationship not in GRANTORS:
            raise Forbidden("Only the file's owner shares it.")
        existing = await self.session.get(Grant, body.grant_id)
        if existing is not None:
            if (existing.file_id, existing.grantee_id, existing.granter_id) != (
                    body.file_id, body.grantee_id, granter):
                raise Conflict("This grant id is taken.")
            return grant_out(existing), False
        if body.grantee_id == granter:
            raise Conflict("The owner already holds the file.")
        check_terms(body.relationship, _plain(body.scopes), body.valid_from, body.valid_until,
                    self.now)
        grant = Grant(id=body.grant_id, file_id=body.file_id, grantee_id=body.grantee_id,
                      granter_id=granter, relationship=body.relationship,
                      scopes=dict(body.scopes), status="pending", kind="direct",
                      valid_from=body.valid_from, valid_until=body.valid_until,
                      created_at=self.now)
        self.session.add(grant)
        await self.session.flush()
        await self._log(body.file_id, granter, "grant.create", grant.id)
        return grant_out(grant), True

    async def list_for_file(self, file_id: uuid.UUID, account: uuid.UUID) -> list[GrantOut]:
        mine = await self._my_grant(file_id, account)
        stmt = select(Grant).where(Grant.file_id == file_id)
        if mine.relationship not in ROTATORS:
            stmt = stmt.where(Grant.grantee_id == account)
        rows = await self.session.execute(stmt.order_by(Grant.created_at))
        return [grant_out(g) for g in rows.scalars()]

    async def get(self, grant_id: uuid.UUID, account: uuid.UUID) -> GrantOut:
        grant = await self.session.get(Grant, grant_id)
        if grant is None or account not in (grant.granter_id, grant.grantee_id):
            raise NotFound("No such grant.")
        return grant_out(grant)

    async def revoke(self, grant_id: uuid.UUID, account: uuid.UUID) -> GrantOut:
        grant = await self.session.get(Grant, grant_id)
        if grant is None:
            raise NotFound("No such grant.")
        owner = await self.session.get(PatientFile, grant.file_id)
        may = account == grant.grantee_id or (owner is not None and owner.owner_id == account)
        if not may or grant.relationship == "owner":
            raise NotFound("No such grant.")
        if grant.status in ("active", "pending"):
            # A pending grant too: an invitee who redeemed has opened the keys already.
            grant.status, grant.revoked_at = "revoked", self.now
            await self._queue(grant.file_id, grant.scopes, "revoked", grant.id)
            await self.session.flush()
            await self._log(grant.file_id, account, "grant.revoke", grant.id)
        return grant_out(grant)

    async def _queue(self, file_id: uuid.UUID, scopes: Any, reason: str,
                     grant_id: uuid.UUID | None) -> None:
        """Queue a rotation of each scope, unless one is pending that has not stored its new
        keys yet (one already rotated must rotate again: the leaver may hold its keys)."""
        self.changed.add(file_id)
        for scope in scopes:
            pending = (await self.session.execute(
                select(Rotation.id).where(Rotation.file_id == file_id,
                                          Rotation.scope == scope, Rotation.done_at.is_(None),
                                          Rotation.rotated_version.is_(None))
            )).first()
            if pending is None:
                self.session.add(Rotation(id=uuid.uuid4(), file_id=file_id, scope=scope,
                                          reason=reason, grant_id=grant_id, created_at=self.now))

    async def sweep_expired(self) -> int:
        """Grants past their end stop at once (the access query filters them); this marks
        them and queues the rotation that makes the stop cryptographic."""
        rows = (await self.session.execute(
            select(Grant).where(Grant.status == "active", Grant.valid_until.is_not(None),
                                Grant.valid_until <= self.now))).scalars().all()
        for grant in rows:
            self.changed.add(grant.file_id)
            grant.status = "expired"
            await self._queue(grant.file_id, grant.scopes, "expired", grant.id)
            await self._log(grant.file_id, grant.grantee_id, "grant.expire", grant.id)
        lapsed = (await self.session.execute(
            select(Invitation).where(Invitation.looked_up_at.is_not(None),
                                     Invitation.redeemed_at.is_(None),
                                     Invitation.cancelled_at.is_(None),
                                     Invitation.loss_queued_at.is_(None),
                                     Invitation.expires_at <= self.now))).scalars().all()
        for invitation in lapsed:
            await self._invitation_lost(invitation, "expired")
        await self.session.flush()
        return len(rows) + len(lapsed)

    async def _invitation_lost(self, invitation: Invitation, reason: str) -> None:
        """Whoever fetched the payload with the code may have opened the keys."""
        invitation.loss_queued_at = self.now
        await self._queue(invitation.file_id, invitation.scopes, reason, None)
        await self._log(invitation.file_id, invitation.inviter_id, f"invitation.{reason}",
                        invitation.id)

    async def members(self, file_id: uuid.UUID, account: uuid.UUID) -> list[MemberOut]:
        mine = await self._my_grant(file_id, account)
        if mine.relationship not in ROTATORS:
            raise Forbidden("Only the owner or the care team see the members.")
        rows = await self.session.execute(
            select(Grant).where(Grant.file_id == file_id, live_grant(self.now))
            .order_by(Grant.created_at))
        return [MemberOut(account_id=g.grantee_id, relationship=g.relationship, scopes=g.scopes,
                          valid_from=aware(g.valid_from), valid_until=aware(g.valid_until))
                for g in rows.scalars()]

    async def rotations(self, account: uuid.UUID, file_id: uuid.UUID | None) -> list[RotationOut]:
        await self.sweep_expired()
        stmt = (select(Rotation).join(Grant, and_(Grant.file_id == Rotation.file_id,
                                                  Grant.grantee_id == account))
                .where(Rotation.done_at.is_(None), Grant.relationship.in_(ROTATORS),
                       live_grant(self.now)))
        if file_id is not None:
            stmt = stmt.where(Rotation.file_id == file_id)
        rows = await self.session.execute(stmt.order_by(Rotation.created_at))
        return [RotationOut(id=r.id, file_id=r.file_id, scope=r.scope, reason=r.reason,
                            created_at=aware(r.created_at),  # type: ignore[arg-type]
                            rotated_version=r.rotated_version) for r in rows.scalars()]

    # -- called by the kms ----------------------------------------------------------------------

    async def for_keys(self, grant_id: uuid.UUID, account: uuid.UUID) -> GrantOut:
        """The grant the kms is about to store keys for: the caller must be its granter, or
        its grantee when the grant came from an invitation (the invitee seals to itself)."""
        grant = await self.session.get(Grant, grant_id)
        if grant is None or grant.status not in ("pending", "active"):
            raise NotFound("No such grant.")
        if not (account == grant.granter_id
                or (grant.kind == "invitation" and account == grant.grantee_id)):
            raise NotFound("No such grant.")
        return grant_out(grant)

    async def activate(self, grant_id: uuid.UUID, account: uuid.UUID) -> None:
        await self.for_keys(grant_id, account)
        grant = await self.session.get(Grant, grant_id)
        assert grant is not None
        if grant.status == "pending":
            grant.status = "active"
            self.changed.add(grant.file_id)
            await self.session.flush()
            await self._log(grant.file_id, account, "grant.activate", grant.id)

    async def _rotator_file(self, file_id: uuid.UUID, account: uuid.UUID) -> PatientFile:
        mine = await self._my_grant(file_id, account)
        if mine.relationship not in ROTATORS:
            raise NotFound("No such file.")
        file = (await self.session.execute(
            select(PatientFile).where(PatientFile.id == file_id).with_for_update())
        ).scalar_one()
        return file

    async def scope_rotated(self, file_id: uuid.UUID, scope: str, version: int,
                            account: uuid.UUID) -> None:
        """The kms stored the keys of ``version``: it becomes the scope's current version
        (re-keys go to it), and pending rotations wait for their records to be re-keyed."""
        file = await self._rotator_file(file_id, account)
        versions = dict(file.key_versions or {})
        if version > versions.get(scope, 1):
            versions[scope] = version
            file.key_versions = versions
        await self.session.execute(
            update(Rotation).where(Rotation.file_id == file_id, Rotation.scope == scope,
                                   Rotation.done_at.is_(None))
            .values(rotated_version=version))
        self.changed.add(file_id)
        await self._log(file_id, account, "scope.rotate", f"{scope}:v{version}")

    async def rotation_done(self, file_id: uuid.UUID, scope: str, version: int,
                            account: uuid.UUID) -> int:
        """The rotating device re-keyed every record it could to ``version``, the current
        one: the scope's pending rotations are done. -> how many were pending."""
        file = await self._rotator_file(file_id, account)
        if version != (file.key_versions or {}).get(scope, 1):
            raise RotationNotCurrent(f"Version {version} is not the current {scope} key "
                                     "version of this file.")
        result = await self.session.execute(
            update(Rotation).where(Rotation.file_id == file_id, Rotation.scope == scope,
                                   Rotation.done_at.is_(None),
                                   Rotation.rotated_version.is_not(None))
            .values(done_at=self.now, done_version=version))
        done = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if done:
            self.changed.add(file_id)
            await self._log(file_id, account, "scope.rotation.done", f"{scope}:v{version}")
        return done

    # -- invitations ------------------------------------------------------------------------------

    async def invite(self, inviter: uuid.UUID, body: InvitationCreate) -> InvitationOut:
        mine = await self._my_grant(body.file_id, inviter)
        if mine.relationship not in GRANTORS:
            raise Forbidden("Only the file's owner invites.")
        existing = await self.session.get(Invitation, body.invitation_id)
        if existing is not None:
            if existing.inviter_id != inviter or existing.lookup_id != body.lookup_id:
                raise Conflict("This invitation id is taken.")
            return invitation_out(existing, self.now)
        check_terms(body.relationship, _plain(body.scopes), None, body.valid_until, self.now)
        file = await self.session.get(PatientFile, body.file_id)
        invitation = Invitation(id=body.invitation_id, file_id=body.file_id, inviter_id=inviter,
                                key_versions=dict(file.key_versions or {}) if file else None,
                                lookup_id=body.lookup_id, relationship=body.relationship,
                                scopes=dict(body.scopes), valid_until=body.valid_until,
                                payload=body.payload, verifier=body.verifier.model_dump(),
                                created_at=self.now,
                                expires_at=self.now + timedelta(days=body.expires_in_days))
        self.session.add(invitation)
        await self.session.flush()
        await self._log(body.file_id, inviter, "invitation.create", invitation.id)
        return invitation_out(invitation, self.now)

    async def invitations(self, file_id: uuid.UUID, account: uuid.UUID) -> list[InvitationOut]:
        mine = await self._my_grant(file_id, account)
        if mine.relationship not in GRANTORS:
            raise Forbidden("Only the file's owner sees its invitations.")
        rows = await self.session.execute(select(Invitation).where(Invitation.file_id == file_id)
                                          .order_by(Invitation.created_at))
        return [invitation_out(i, self.now) for i in rows.scalars()]

    def _open(self) -> ColumnElement[bool]:
        return and_(Invitation.redeemed_at.is_(None), Invitation.cancelled_at.is_(None),
                    Invitation.expires_at > self.now)

    async def lookup(self, lookup_id: str) -> InvitationLookupOut:
        row = (await self.session.execute(
            select(Invitation).where(Invitation.lookup_id == lookup_id, self._open())
        )).scalar_one_or_none()
        if row is None:
            raise InvitationUnavailable("No invitation matches, or it was used or expired.")
        if row.looked_up_at is None:
            row.looked_up_at = self.now  # from now on, losing it rotates
            await self.session.flush()
        return InvitationLookupOut(id=row.id, file_id=row.file_id, inviter_id=row.inviter_id,
                                   relationship=row.relationship, scopes=row.scopes,
                                   valid_until=aware(row.valid_until),
                                   expires_at=aware(row.expires_at),  # type: ignore[arg-type]
                                   payload=row.payload)

    async def redeem(self, invitation_id: uuid.UUID, account: uuid.UUID,
                     lookup_id: str, proof: str) -> GrantOut:
        """Single use: of two concurrent redemptions exactly one updates the row. Only a
        caller who derived the lookup id from the code redeems (the id alone is not secret)."""
        grant_id = uuid.uuid4()
        pending = await self.session.get(Invitation, invitation_id)
        if pending is not None and pending.lookup_id == lookup_id:
            file = await self.session.get(PatientFile, pending.file_id)
            now_versions = (file.key_versions or {}) if file is not None else {}
            then = pending.key_versions or {}
            if any(now_versions.get(s, 1) != then.get(s, 1) for s in pending.scopes):
                # The keys it carries were replaced: redeeming would burn the code for
                # keys the kms no longer accepts. Left open, so the inviter can cancel it.
                raise InvitationStale("This invitation carries keys that were rotated since; "
                                      "ask for a new one.")
        result = await self.session.execute(
            update(Invitation).where(Invitation.id == invitation_id,
                                     Invitation.lookup_id == lookup_id, self._open())
            .values(redeemed_by=account, redeemed_at=self.now, grant_id=grant_id,
                    redemption_proof=proof)
            # The row may sit in the session already (the staleness check above): no
            # in-Python evaluation of the criteria, reload it after the update instead.
            .execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise InvitationUnavailable("No invitation matches, or it was used or expired.")
        invitation = await self.session.get(Invitation, invitation_id, populate_existing=True)
        assert invitation is not None
        if invitation.inviter_id == account:
            raise Conflict("The inviter cannot redeem their own invitation.")
        grant = Grant(id=grant_id, file_id=invitation.file_id, grantee_id=account,
                      granter_id=invitation.inviter_id, relationship=invitation.relationship,
                      scopes=invitation.scopes, status="pending", kind="invitation",
                      valid_until=invitation.valid_until, created_at=self.now)
        self.session.add(grant)
        await self.session.flush()
        await self._log(invitation.file_id, account, "invitation.redeem", invitation.id)
        return grant_out(grant)

    async def cancel_invitation(self, invitation_id: uuid.UUID, account: uuid.UUID) -> None:
        invitation = await self.session.get(Invitation, invitation_id)
        if invitation is None or invitation.inviter_id != account:
            raise NotFound("No such invitation.")
        if invitation.cancelled_at is None and invitation.redeemed_at is None:
            invitation.cancelled_at = self.now
            await self._log(invitation.file_id, account, "invitation.cancel", invitation.id)
            if invitation.looked_up_at is not None:  # the code may have opened the keys
                await self._invitation_lost(invitation, "cancelled")
        await self.session.flush()
