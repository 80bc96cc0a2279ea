/**
 * Sharing a patient file: re-encryption grants, invitations, revocation and key rotation
 * (mirrors `ecrin_client.sharing`). Everything that touches a key happens here, on the
 * device, through the trust rule (`trust.ts`):
 *
 * - a **grant** re-seals the scope keys this device holds to the grantee's public identity,
 *   which this device must trust (verified in person and pinned, or bound by an invitation),
 *   and signs the entries;
 * - an **invitation** wraps the scope keys and the inviter's fingerprint under a one-time
 *   code (Argon2id, off the main thread); the code is returned to be handed over in person
 *   and never sent. Accepting opens the keys here, binds the inviter named inside, seals the
 *   keys to this identity and sends a proof keyed by the code;
 * - **sync** works through the rotations the sharing service queued after a revocation or an
 *   expiry (`rotation.ts`).
 */

import {
  DecryptionError, grantScopeKeys, InvitationCode, InvitationPayload, type GrantTerms, type KeyringEntry,
  type PublicIdentity, type Relationship, type Scope, type ScopeKey,
} from "./core.ts";
import { b64e, canonicalUuid } from "./encoding.ts";
import { Conflict, EcrinError, IntegrityError, InvalidInput, NotFound, PermissionDenied } from "./errors.ts";
import { defaultParams, type KdfProfile } from "./kdf-policy.ts";
import { SCOPES, type Records } from "./records.ts";
import { permissions, Rotations, whole, type Rotated } from "./rotation.ts";
import { createInvitation, redeemInvitation, type SlowCrypto } from "./slow.ts";
import { leave, overview, type SharingOverview } from "./sharing-overview.ts";
import { Untrusted } from "./trust.ts";

export const RELATIONSHIPS = ["patient", "parent", "guardian", "care_team", "replacement", "secretary"] as const;
/** Relationships that may rotate a file's scopes, hence hand its owner new key versions. */
const ROTATING = new Set(["care_team"]);

export type Access = "read" | "append";
export type ScopeTerms = Partial<Record<Scope, Access>>;

/** A direct grant to an account whose key this device has not verified and pinned. */
export class NotVerified extends InvalidInput {}

export interface GrantView {
  grantId: string;
  fileId: string;
  granteeId: string;
  granterId: string;
  relationship: string;
  scopes: Record<string, string>;
  kind: string;
  status: string;
  validUntil?: string;
  /** Why this device trusts the grantee's key; undefined: it does not. */
  trusted?: string;
  safetyNumber?: string;
}

export interface Invited {
  invitationId: string;
  fileId: string;
  relationship: string;
  scopes: ScopeTerms;
  validUntil?: string;
  expiresAt?: string;
  /** The one-time code: shown once, handed over in person, never sent to a server. */
  code: string;
}

export interface Accepted {
  grantId: string;
  fileId: string;
  relationship: string;
  scopes: Record<string, string>;
  validUntil?: string;
  inviterId: string;
  inviterFingerprint: string;
  safetyNumber: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;


const isoSeconds = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, "Z");

export class Sharing {
  readonly records: Records;
  readonly slow: SlowCrypto;
  readonly kdfProfile: KdfProfile;

  constructor(records: Records, options: { slow: SlowCrypto; kdfProfile: KdfProfile }) {
    this.records = records;
    this.slow = options.slow;
    this.kdfProfile = options.kdfProfile;
  }

  private get t() {
    return this.records.client.transport;
  }

  get accountId(): string {
    return this.records.identity.accountId;
  }

  /** The scopes each relationship gets unless told otherwise. */
  async defaults(): Promise<Record<string, ScopeTerms>> {
    const body = await this.t.json<Json>("GET", "/v1/grants/defaults");
    if (typeof body !== "object" || body === null) throw new IntegrityError("the sharing service sent malformed defaults");
    return body;
  }

  async terms(relationship: string, scopes?: ScopeTerms): Promise<ScopeTerms> {
    if (!(RELATIONSHIPS as readonly string[]).includes(relationship)) {
      throw new InvalidInput(`relationship must be one of ${RELATIONSHIPS.join(", ")}`);
    }
    const chosen = scopes ?? (await this.defaults())[relationship];
    if (!chosen || Object.keys(chosen).length === 0) throw new InvalidInput(`no default scopes for ${relationship}: give scopes`);
    for (const [scope, access] of Object.entries(chosen)) {
      if (!(SCOPES as readonly string[]).includes(scope) || (access !== "read" && access !== "append")) {
        throw new InvalidInput("scopes are clinical, shared or administrative, each read or append");
      }
    }
    return { ...chosen };
  }

  // -- keys this device holds --------------------------------------------------------------

  /** Every version of a scope this device can open, oldest first (so a new member reads
   * records that are not re-keyed yet). */
  private async allVersions(fileId: string, scope: Scope): Promise<ScopeKey[]> {
    const latest = await this.records.scopeKey(fileId, scope);
    const keys = [latest];
    for (let version = latest.version - 1; version > 0; version--) {
      try {
        keys.unshift(await this.records.scopeKey(fileId, scope, version));
      } catch (error) {
        if (!(error instanceof NotFound)) throw error;
      }
    }
    return keys;
  }

  // -- grants -------------------------------------------------------------------------------

  /** Share with an existing account whose key this device verified (pinned) or bound. */
  async grant(fileId: string, accountId: string, relationship: Relationship, options: {
    scopes?: ScopeTerms; validUntil?: Date;
  } = {}): Promise<GrantView> {
    const fid = canonicalUuid(fileId, "patient file id");
    const granteeId = canonicalUuid(accountId);
    if (granteeId === this.accountId) throw new InvalidInput("you already hold this file");
    const chosen = await this.terms(relationship, options.scopes);
    const until = whole(options.validUntil);
    let grantee: PublicIdentity;
    try {
      grantee = await this.records.trust.identity(granteeId, { fileId: fid });
    } catch (error) {
      if (!(error instanceof Untrusted)) throw error;
      throw new NotVerified(`account ${granteeId} is not verified on this device: compare safety numbers in person, then share`);
    }
    const pinned = await this.records.trust.store.recorded(granteeId);
    await this.sync(fid); // hand over the keys as they are after any pending rotation
    const grantId = crypto.randomUUID();
    const body: Json = { grant_id: grantId, file_id: fid, grantee_id: granteeId, relationship, scopes: chosen };
    if (until !== null) body.valid_until = isoSeconds(until);
    const created = await this.records.client.retrying(() => this.t.json<Json>("POST", "/v1/grants", { json: body, ok: [200, 201] }));
    const entries: KeyringEntry[] = [];
    for (const [scope, access] of Object.entries(chosen) as [Scope, Access][]) {
      const terms: GrantTerms = { relationship, permissions: permissions(access), validFrom: null, validUntil: until };
      entries.push(...grantScopeKeys(await this.allVersions(fid, scope), grantee, terms, {
        granter: this.records.identity, pinnedFingerprint: pinned,
      }));
    }
    await this.records.client.retrying(() => this.t.request("POST", `/v1/keyrings/${fid}/grants/${grantId}`, {
      ok: [200, 201], json: { entries: entries.map((e) => e.toJSON()) },
    }));
    await this.records.trust.store.granted(fid, granteeId, ROTATING.has(relationship));
    return {
      ...grantView({ ...created, status: "active" }),
      trusted: await this.records.trust.reason(granteeId),
      safetyNumber: this.records.identity.publicIdentity().safetyNumber(grantee),
    };
  }

  /** The file's grants as the sharing service lists them, each with why this device trusts the grantee. */
  async grants(fileId: string): Promise<GrantView[]> {
    const fid = canonicalUuid(fileId, "patient file id");
    await this.records.trust.scanInvitations(fid);
    const raw = await this.t.json<Json[]>("GET", "/v1/grants", { params: { file_id: fid } });
    if (!Array.isArray(raw)) throw new IntegrityError("the sharing service sent a malformed grant list");
    const out: GrantView[] = [];
    for (const item of raw) out.push({ ...grantView(item), trusted: await this.records.trust.reason(String(item.grantee_id)) });
    return out;
  }

  /** Who holds the file: grants with trust status and safety numbers; invitations (owner). */
  async overview(fileId: string): Promise<SharingOverview> {
    return overview(this, fileId);
  }

  /** Leave a file this account was granted: revoke one's own grants (the owner rotates). */
  async leave(fileId: string): Promise<GrantView[]> {
    return leave(this, fileId);
  }

  /** @internal A grant as the sharing service sent it, checked. */
  grantView(raw: Json): GrantView {
    return grantView(raw);
  }

  /**
   * Revoke a grant (access stops at once), then rotate its scopes from this device. An
   * invitation id cancels the invitation instead.
   */
  async revoke(grantOrInvitation: string, options: { rotate?: boolean } = {}
  ): Promise<{ what: "grant" | "invitation"; grant?: GrantView; rotations: Rotated[] }> {
    const ref = canonicalUuid(grantOrInvitation, "grant id");
    const before = await this.latestVersions(ref);
    let raw: Json;
    try {
      raw = await this.t.json<Json>("DELETE", `/v1/grants/${ref}`);
    } catch (error) {
      if (!(error instanceof NotFound)) throw error;
      await this.t.request("DELETE", `/v1/invitations/${ref}`, { ok: [200, 204] });
      return { what: "invitation", rotations: [] };
    }
    const grant = grantView(raw);
    if (grant.granteeId === this.accountId) return { what: "grant", grant, rotations: [] }; // leaving: the owner rotates
    // Remembered here: the revoked member never receives this file's keys again from this
    // device, whatever the member list says.
    await this.records.trust.store.revoked(grant.fileId, grant.granteeId);
    if (options.rotate === false) return { what: "grant", grant, rotations: [] };
    const missing = (Object.keys(grant.scopes) as Scope[]).filter((s) => !before.has(s));
    for (const [scope, version] of await this.scopeVersions(grant.fileId, missing)) before.set(scope, version);
    // The queue is the server's word (it may call the current version "rotated"): every
    // scope of the grant ends on a key version newer than the one the member held.
    const rotations = (await this.sync(grant.fileId)).filter((r) => r.version > (before.get(r.scope) ?? 0));
    const done = new Set(rotations.map((r) => r.scope));
    for (const scope of Object.keys(grant.scopes).sort() as Scope[]) {
      if (!done.has(scope)) rotations.push(await this.rotate(grant.fileId, scope, "revoked"));
    }
    return { what: "grant", grant, rotations };
  }

  /** Before a revocation: the latest key version of each scope of the grant, as this
   * device's verified keyring shows it (empty for an invitation or a grant it cannot see:
   * the revocation then rotates every scope of the grant). */
  private async latestVersions(grantId: string): Promise<Map<Scope, number>> {
    let grant: GrantView;
    try {
      grant = grantView(await this.t.json<Json>("GET", `/v1/grants/${grantId}`));
    } catch (error) {
      if (error instanceof NotFound || error instanceof PermissionDenied || error instanceof IntegrityError) return new Map();
      throw error;
    }
    if (grant.granteeId === this.accountId) return new Map();
    return this.scopeVersions(grant.fileId, Object.keys(grant.scopes) as Scope[]);
  }

  private async scopeVersions(fileId: string, scopes: Scope[]): Promise<Map<Scope, number>> {
    const versions = new Map<Scope, number>();
    for (const scope of scopes) {
      try {
        versions.set(scope, (await this.records.scopeKey(fileId, scope)).version);
      } catch (error) {
        if (!(error instanceof NotFound)) throw error;
      }
    }
    return versions;
  }

  // -- invitations -------------------------------------------------------------------------

  /** Wrap the current scope keys under a fresh one-time code; upload only the wrap. */
  async invite(fileId: string, relationship: Relationship, options: {
    scopes?: ScopeTerms; validUntil?: Date; expiresInDays?: number;
  } = {}): Promise<Invited> {
    const fid = canonicalUuid(fileId, "patient file id");
    const chosen = await this.terms(relationship, options.scopes);
    const until = whole(options.validUntil);
    // A pending rotation first: an invitation made now would carry keys the rotation is
    // about to replace, and could then never be redeemed.
    await this.sync(fid);
    const keys: ScopeKey[] = [];
    for (const scope of Object.keys(chosen) as Scope[]) keys.push(await this.records.scopeKey(fid, scope));
    const { code, payload, verifier } = await createInvitation(this.slow, keys, this.records.identity, defaultParams(this.kdfProfile));
    const invitationId = crypto.randomUUID();
    const body: Json = {
      invitation_id: invitationId, file_id: fid, lookup_id: code.lookupId(), relationship, scopes: chosen,
      expires_in_days: options.expiresInDays ?? 14, payload: payload.toJSON(), verifier: verifier.toJSON(),
    };
    if (until !== null) body.valid_until = isoSeconds(until);
    // Recorded before it is sent: only invitations made here re-admit a revoked account.
    await this.records.trust.store.madeInvitation(fid, invitationId);
    const created = await this.records.client.retrying(() => this.t.json<Json>("POST", "/v1/invitations", { json: body, ok: [200, 201] }));
    const out: Invited = { invitationId, fileId: fid, relationship, scopes: chosen, code: code.toText() };
    if (until !== null) out.validUntil = until.toISOString();
    if (typeof created.expires_at === "string") out.expiresAt = created.expires_at;
    return out;
  }

  /** Redeem a code: look it up, open the keys here, claim the grant, seal to myself. */
  async accept(codeText: string): Promise<Accepted> {
    let code: InvitationCode;
    try {
      code = InvitationCode.fromText(codeText);
    } catch (error) {
      throw new InvalidInput(`not a valid invitation code: ${(error as Error).message}`);
    }
    const found = await this.t.json<Json>("GET", `/v1/invitations/lookup/${code.lookupId()}`);
    let payload: InvitationPayload, invitationId: string, fileId: string, relationship: Relationship;
    let scopes: Record<string, string>, inviterId: string;
    try {
      payload = InvitationPayload.fromJSON(found.payload);
      invitationId = canonicalUuid(found.id, "invitation id");
      fileId = canonicalUuid(found.file_id, "patient file id");
      relationship = String(found.relationship) as Relationship;
      if (!(RELATIONSHIPS as readonly string[]).includes(relationship)) throw new Error("relationship");
      scopes = Object.fromEntries(Object.entries(found.scopes as Json).map(([k, v]) => [k, String(v)]));
      inviterId = canonicalUuid(found.inviter_id);
    } catch {
      throw new IntegrityError("the sharing service sent a malformed invitation");
    }
    if (!payload.params.withinCeiling()) {
      throw new IntegrityError("the invitation asks for key-derivation parameters above what this client accepts: refusing it");
    }
    const me = this.records.identity.publicIdentity();
    let redeemed;
    try {
      redeemed = await redeemInvitation(this.slow, code, payload, me);
    } catch (error) {
      if (error instanceof DecryptionError) throw new IntegrityError("the invitation does not open with this code: it was altered on the server");
      throw error;
    }
    const keys = redeemed.scopeKeys;
    if (payload.fileId !== fileId || keys.some((k) => k.fileId !== fileId)
      || JSON.stringify(keys.map((k) => k.scope).sort()) !== JSON.stringify(Object.keys(scopes).sort())) {
      throw new IntegrityError("the invitation's keys do not match its terms");
    }
    if (redeemed.inviterId !== inviterId) throw new IntegrityError("the server names another inviter than the invitation does");
    // The inviter's key is the one named inside what the code opened, whatever the directory
    // would like this device to believe: bound before anything is sent.
    const inviter = await this.records.client.directoryIdentity(inviterId);
    await this.records.trust.bindInviter(inviter, redeemed.inviterFingerprint, fileId, invitationId);
    const grant = await this.t.json<Json>("POST", `/v1/invitations/${invitationId}/redeem`, {
      json: { lookup_id: code.lookupId(), proof: b64e(redeemed.proof) },
    });
    const validUntil = whole(grant.valid_until);
    const entries: KeyringEntry[] = [];
    for (const key of keys) {
      const terms: GrantTerms = { relationship, permissions: permissions(scopes[key.scope]!), validFrom: null, validUntil };
      entries.push(...grantScopeKeys([key], me, terms, { granter: this.records.identity }));
    }
    try {
      await this.t.request("POST", `/v1/keyrings/${fileId}/grants/${grant.id}`, {
        ok: [200, 201], json: { entries: entries.map((e) => e.toJSON()) },
      });
    } catch (error) {
      if (error instanceof InvalidInput) {
        throw new Conflict("the invitation's keys are older than the file's current keys (a key rotation happened " +
          "after it was made): ask the practitioner for a new invitation");
      }
      throw error;
    }
    const out: Accepted = {
      grantId: String(grant.id), fileId, relationship, scopes, inviterId,
      inviterFingerprint: inviter.fingerprintHex(), safetyNumber: me.safetyNumber(inviter),
    };
    if (validUntil !== null) out.validUntil = validUntil.toISOString();
    return out;
  }

  // -- rotations (rotation.ts) -----------------------------------------------------------

  /** Do every pending rotation this account may do (all files, or one). */
  async sync(fileId?: string): Promise<Rotated[]> {
    return new Rotations(this.records).sync(fileId);
  }

  async rotate(fileId: string, scope: Scope, reason = ""): Promise<Rotated> {
    return new Rotations(this.records).rotate(fileId, scope, reason);
  }
}

function grantView(raw: Json): GrantView {
  try {
    const view: GrantView = {
      grantId: canonicalUuid(raw.id, "grant id"), fileId: canonicalUuid(raw.file_id, "patient file id"),
      granteeId: canonicalUuid(raw.grantee_id), granterId: canonicalUuid(raw.granter_id),
      relationship: String(raw.relationship), scopes: { ...raw.scopes }, kind: String(raw.kind ?? "direct"),
      status: String(raw.status),
    };
    if (raw.valid_until) view.validUntil = String(raw.valid_until);
    return view;
  } catch (error) {
    if (error instanceof EcrinError) throw new IntegrityError("the sharing service sent a malformed grant");
    throw error;
  }
}
