/**
 * Who holds a patient file, as this device sees it (mirrors `Sharing.overview` of
 * `ecrin_client.sharing` and what `ecrin share list` shows): the file's grants, each with
 * why this device trusts the member's key (`self`, `verified` in person, bound by an
 * `invitation`) or `UNVERIFIED` — a member this device neither seals new keys to nor
 * accepts anything signed by — and the safety number to compare in person; for the file's
 * owner, the invitations too, pending or redeemed, with whether the redeemer's proof bound
 * its key here.
 *
 * Also leaving a share (a grantee revoking its own grant: the owner's device rotates the
 * keys on its next write or sync, as with `ecrin share revoke` of one's own grant).
 */

import { canonicalUuid } from "./encoding.ts";
import { IntegrityError, InvalidInput, NotFound, PermissionDenied } from "./errors.ts";
import type { Sharing, GrantView } from "./sharing.ts";
import type { Why } from "./trust.ts";

/** How the sharing screens show a member's key: why it is trusted, or `UNVERIFIED`. */
export type TrustStatus = Why | "UNVERIFIED";

export interface MemberView extends GrantView {
  /** `trusted`, or `UNVERIFIED` when this device does not trust the member's key. */
  trustStatus: TrustStatus;
  /** Verified in person and pinned on this device. */
  pinned: boolean;
  createdAt?: string;
  revokedAt?: string;
}

export interface InvitationView {
  invitationId: string;
  fileId: string;
  relationship: string;
  scopes: Record<string, string>;
  /** pending, redeemed, cancelled or expired (the sharing service's word). */
  status: string;
  expiresAt?: string;
  validUntil?: string;
  redeemedBy?: string;
  redeemedAt?: string;
  grantId?: string;
  redeemerSafetyNumber?: string;
  /** The redeemer's proof was checked on this device: its key is bound to this invitation. */
  redeemerBound: boolean;
}

export interface SharingOverview {
  fileId: string;
  grants: MemberView[];
  /** Only the file's owner sees invitations; empty for everyone else. */
  invitations: InvitationView[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;

const text = (value: unknown): string | undefined => (value === null || value === undefined ? undefined : String(value));

/** The safety number to compare in person (from the directory's key, which is exactly what
 * comparing it checks), and whether that key is pinned here. */
async function safety(sharing: Sharing, accountId: string | undefined): Promise<{ number?: string; pinned: boolean }> {
  if (!accountId || accountId === sharing.accountId) return { pinned: false };
  const client = sharing.records.client;
  let theirs;
  try {
    theirs = await client.getDirectory(accountId);
  } catch (error) {
    if (error instanceof NotFound || error instanceof IntegrityError) return { pinned: false };
    throw error;
  }
  return {
    number: sharing.records.identity.publicIdentity().safetyNumber(theirs),
    pinned: (await client.profile.pinned(accountId)) !== undefined,
  };
}

function invitationBase(raw: Json): Omit<InvitationView, "redeemerBound" | "redeemerSafetyNumber"> {
  try {
    const view: Omit<InvitationView, "redeemerBound" | "redeemerSafetyNumber"> = {
      invitationId: canonicalUuid(raw.id, "invitation id"), fileId: canonicalUuid(raw.file_id, "patient file id"),
      relationship: String(raw.relationship), status: String(raw.status),
      scopes: Object.fromEntries(Object.entries(raw.scopes as Json).map(([k, v]) => [k, String(v)])),
    };
    const optional: [keyof InvitationView, unknown][] = [
      ["expiresAt", raw.expires_at], ["validUntil", raw.valid_until], ["redeemedAt", raw.redeemed_at],
    ];
    for (const [key, value] of optional) if (text(value) !== undefined) (view as Json)[key] = text(value);
    if (raw.redeemed_by) view.redeemedBy = canonicalUuid(raw.redeemed_by);
    if (raw.grant_id) view.grantId = canonicalUuid(raw.grant_id, "grant id");
    return view;
  } catch {
    throw new IntegrityError("the sharing service sent a malformed invitation");
  }
}

/** The file's grants (and, for its owner, invitations), with trust and safety numbers. */
export async function overview(sharing: Sharing, fileId: string): Promise<SharingOverview> {
  const fid = canonicalUuid(fileId, "patient file id");
  const t = sharing.records.client.transport;
  const trust = sharing.records.trust;
  const rawGrants = await t.json<Json[]>("GET", "/v1/grants", { params: { file_id: fid } });
  if (!Array.isArray(rawGrants)) throw new IntegrityError("the sharing service sent a malformed grant list");
  const checks = new Map((await trust.scanInvitations(fid)).map((c) => [c.invitationId, c]));
  const grants: MemberView[] = [];
  for (const raw of rawGrants) {
    const view = sharing.grantView(raw);
    const { number, pinned } = await safety(sharing, view.granteeId);
    const trusted = await trust.reason(view.granteeId);
    const member: MemberView = { ...view, trustStatus: trusted ?? "UNVERIFIED", pinned };
    if (trusted !== undefined) member.trusted = trusted;
    if (number !== undefined) member.safetyNumber = number;
    if (text(raw.created_at) !== undefined) member.createdAt = text(raw.created_at);
    if (text(raw.revoked_at) !== undefined) member.revokedAt = text(raw.revoked_at);
    grants.push(member);
  }
  let rawInvitations: Json[];
  try {
    rawInvitations = await t.json<Json[]>("GET", "/v1/invitations", { params: { file_id: fid } });
  } catch (error) {
    if (!(error instanceof PermissionDenied)) throw error;
    rawInvitations = []; // only the owner sees invitations
  }
  if (!Array.isArray(rawInvitations)) throw new IntegrityError("the sharing service sent a malformed invitation list");
  const invitations: InvitationView[] = [];
  for (const raw of rawInvitations) {
    const base = invitationBase(raw);
    const { number } = await safety(sharing, base.redeemedBy);
    const bound = base.redeemedBy !== undefined && (checks.get(base.invitationId)?.bound === true
      || (await trust.reason(base.redeemedBy)) !== undefined);
    const view: InvitationView = { ...base, redeemerBound: bound };
    if (number !== undefined) view.redeemerSafetyNumber = number;
    invitations.push(view);
  }
  return { fileId: fid, grants, invitations };
}

/**
 * Leave a patient file this account was granted (a parent, the patient, a colleague):
 * revoke one's own live grants of it. Access stops at once on the servers; the owner's
 * device rotates the scope keys (the sharing service queued it), so nothing written later
 * is readable with the keys this device held. The owner cannot leave their own file.
 */
export async function leave(sharing: Sharing, fileId: string): Promise<GrantView[]> {
  const fid = canonicalUuid(fileId, "patient file id");
  const raw = await sharing.records.client.transport.json<Json[]>("GET", "/v1/grants", { params: { file_id: fid } });
  if (!Array.isArray(raw)) throw new IntegrityError("the sharing service sent a malformed grant list");
  const mine = raw.map((g) => sharing.grantView(g)).filter((g) => g.granteeId === sharing.accountId);
  if (mine.some((g) => g.relationship === "owner")) throw new InvalidInput("the owner of a patient file cannot leave it");
  const live = mine.filter((g) => g.status === "active" || g.status === "pending");
  if (live.length === 0) throw new NotFound("this account holds no grant of this patient file");
  const left: GrantView[] = [];
  for (const grant of live) {
    const done = await sharing.revoke(grant.grantId);
    if (done.grant !== undefined) left.push(done.grant);
  }
  return left;
}
