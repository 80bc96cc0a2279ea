/**
 * The one place where a device decides whose public key it uses (docs/protocol.md §17),
 * mirroring `ecrin_client.trust` rule for rule.
 *
 * A device uses a public identity — to seal scope keys to it, to accept a keyring entry it
 * signed, to accept a record's author or wrapper signature — only when its own records say
 * why: `self` (its own account), `verified` (safety numbers compared in person, pinned), or
 * `invitation` (an invitation bound it on this device, for that invitation's file only).
 * Nothing a server serves — a member list, a directory entry, a newer key version — is
 * trusted by itself: an identity without a reason is refused with `Untrusted`, which names
 * the account; a key that differs from the one recorded is `IdentityMismatch`.
 *
 * Keyring entries ask more: their granter must be *entitled* to hand this device keys of
 * that file — this account; the inviter bound for that very file; or, verified in person,
 * an account this device granted a rotating role on a file it owns, or the first verified
 * account that handed this device the keys of a file it does not own. Members this device
 * revoked never receive the file's keys again from it, until granted or invited again.
 *
 * The records are the profile's `pins.json`, `bindings.json` and `files.json`, in the same
 * layout as the Python client's, so one profile folder serves both.
 */

import {
  checkRedemption, InvitationVerifier, KeyringEntry, openEntry, type IdentityKeys, type PublicIdentity,
} from "./core.ts";
import { b64d, compact, grouped } from "./encoding.ts";
import { EcrinError, IdentityMismatch, IntegrityError, NotFound, PermissionDenied } from "./errors.ts";
import type { Profile } from "./state.ts";
import type { GatewayTransport } from "./transport.ts";

const BINDINGS = "bindings.json";
const FILES = "files.json";

export type Why = "self" | "verified" | "invitation";

/** An identity this device has no reason to trust: never used, always named. */
export class Untrusted extends IntegrityError {
  readonly accountId: string;

  constructor(accountId: string, use = "use its key") {
    super(`account ${accountId} is not verified on this device, so it will not ${use}. ` +
      `Compare safety numbers in person (\`ecrin verify ${accountId}\`), then retry`);
    this.accountId = accountId;
  }
}

/** An invitation that bound `accountId`'s key on this device, for one patient file. */
export interface Binding {
  accountId: string;
  fingerprint: string;
  fileId: string;
  /** `inviter` (it invited this account) or `invitee` (this account invited it, checked its proof). */
  role: "inviter" | "invitee";
  invitationId: string;
}

export interface InviteeCheck {
  invitationId: string;
  accountId: string;
  bound: boolean;
}

interface FileRecord {
  owned?: boolean;
  granters?: string[];
  revoked?: string[];
  /** invitations this device made to the file, in order */
  made?: string[];
  /** per revoked account: how many of `made` existed when it was revoked */
  revoked_after?: Record<string, number>;
}

type Json = Record<string, unknown>;
const isRecord = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** What this device has recorded: pins (self, verified) and invitation bindings. */
export class TrustStore {
  readonly profile: Profile;

  constructor(profile: Profile) {
    this.profile = profile;
  }

  private async allBindings(): Promise<Record<string, { fingerprint: string; invitations: Json[] }>> {
    const raw = await this.profile.read(BINDINGS);
    return (isRecord(raw) ? raw : {}) as Record<string, { fingerprint: string; invitations: Json[] }>;
  }

  async bindings(accountId: string): Promise<Binding[]> {
    const entry = (await this.allBindings())[accountId];
    if (!isRecord(entry)) return [];
    const fingerprint = String(entry.fingerprint ?? "");
    return (Array.isArray(entry.invitations) ? entry.invitations : []).filter(isRecord).map((b) => ({
      accountId, fingerprint, fileId: String(b.file_id), role: String(b.role) as Binding["role"],
      invitationId: String(b.invitation_id),
    }));
  }

  /** The fingerprint this device recorded for the account (pinned or bound). */
  async recorded(accountId: string): Promise<string | undefined> {
    const pinned = await this.profile.pinned(accountId);
    if (pinned !== undefined) return compact(pinned);
    const entry = (await this.allBindings())[accountId];
    if (isRecord(entry) && entry.fingerprint) return compact(String(entry.fingerprint));
    return undefined;
  }

  /** Why this device trusts the account; an invitation counts for its own file only (for
   * any file when `fileId` is undefined: a display, not a use). */
  async reason(accountId: string, ownId: string, fileId?: string): Promise<Why | undefined> {
    if (accountId === ownId) return "self";
    if ((await this.profile.pinned(accountId)) !== undefined) return "verified";
    if ((await this.bindings(accountId)).some((b) => fileId === undefined || b.fileId === fileId)) return "invitation";
    return undefined;
  }

  // per file: owned here, who may grant it, who was revoked from it

  private async files(): Promise<Record<string, FileRecord>> {
    const raw = await this.profile.read(FILES);
    return (isRecord(raw) ? raw : {}) as Record<string, FileRecord>;
  }

  async file(fileId: string): Promise<FileRecord> {
    const entry = (await this.files())[fileId];
    return isRecord(entry) ? entry : {};
  }

  private async updateFile(fileId: string, change: {
    owned?: boolean; add?: Partial<Record<"granters" | "revoked", string>>; remove?: Partial<Record<"granters" | "revoked", string>>;
  }): Promise<void> {
    const data = await this.files();
    const entry: FileRecord = isRecord(data[fileId]) ? data[fileId]! : {};
    data[fileId] = entry;
    const before = JSON.stringify(entry);
    if (change.owned !== undefined) entry.owned = change.owned;
    for (const [key, account] of Object.entries(change.add ?? {}) as ["granters" | "revoked", string][]) {
      const members = (entry[key] ??= []);
      if (!members.includes(account)) members.push(account);
    }
    for (const [key, account] of Object.entries(change.remove ?? {}) as ["granters" | "revoked", string][]) {
      const members = entry[key];
      if (members?.includes(account)) members.splice(members.indexOf(account), 1);
    }
    if (JSON.stringify(entry) !== before) await this.profile.write(FILES, data);
  }

  async ownFile(fileId: string): Promise<void> {
    await this.updateFile(fileId, { owned: true });
  }

  /** This device shared the file with the account (again): no longer revoked; a rotating
   * role (care team) may hand this device new key versions of it. */
  async granted(fileId: string, accountId: string, mayGrant: boolean): Promise<void> {
    await this.updateFile(fileId, { add: mayGrant ? { granters: accountId } : {}, remove: { revoked: accountId } });
  }

  async revoked(fileId: string, accountId: string): Promise<void> {
    await this.updateFile(fileId, { add: { revoked: accountId }, remove: { granters: accountId } });
    // Only an invitation this device makes from now on may bring the account back.
    const data = await this.files();
    const entry: FileRecord = isRecord(data[fileId]) ? data[fileId]! : {};
    data[fileId] = entry;
    (entry.revoked_after ??= {})[accountId] = (entry.made ?? []).length;
    await this.profile.write(FILES, data);
  }

  /** This device created an invitation to the file (its id is chosen here). */
  async madeInvitation(fileId: string, invitationId: string): Promise<void> {
    const data = await this.files();
    const entry: FileRecord = isRecord(data[fileId]) ? data[fileId]! : {};
    data[fileId] = entry;
    const made = (entry.made ??= []);
    if (!made.includes(invitationId)) {
      made.push(invitationId);
      await this.profile.write(FILES, data);
    }
  }

  /** Was the account, revoked from the file, invited again by this device since? */
  async reinvited(fileId: string, accountId: string, invitationId: string): Promise<boolean> {
    const entry = await this.file(fileId);
    const made = entry.made ?? [];
    const since = Number(entry.revoked_after?.[accountId] ?? made.length);
    return made.slice(since).includes(invitationId);
  }

  async isRevoked(fileId: string, accountId: string): Promise<boolean> {
    return ((await this.file(fileId)).revoked ?? []).includes(accountId);
  }

  /** A file this device does not own: the first verified account that hands it the file's
   * keys is its owner's (who shared it); later ones must be the same. */
  async firstGranter(fileId: string, accountId: string): Promise<boolean> {
    const entry = await this.file(fileId);
    if (entry.owned) return false;
    const granters = entry.granters ?? [];
    if (granters.length === 0) {
      await this.updateFile(fileId, { add: { granters: accountId } });
      return true;
    }
    return granters.includes(accountId);
  }

  /** Record an invitation binding; a different key for the same account is refused. */
  async bind(binding: Binding): Promise<void> {
    const digits = compact(binding.fingerprint);
    const recorded = await this.recorded(binding.accountId);
    if (recorded !== undefined && recorded !== digits) {
      throw new IdentityMismatch(`account ${binding.accountId} is recorded on this device with another key: ` +
        `refusing the key the invitation names. Verify it in person (\`ecrin verify ${binding.accountId}\`)`);
    }
    const data = await this.allBindings();
    const entry = (data[binding.accountId] ??= { fingerprint: grouped(digits), invitations: [] });
    const json = { file_id: binding.fileId, role: binding.role, invitation_id: binding.invitationId };
    if (!entry.invitations.some((b) => JSON.stringify(b) === JSON.stringify(json))) {
      entry.invitations.push(json);
      await this.profile.write(BINDINGS, data);
      // Invited again after a revocation — by an invitation this device made since; not an
      // old invitation bound late, which would undo the revocation.
      if (binding.role === "invitee" && (await this.reinvited(binding.fileId, binding.accountId, binding.invitationId))) {
        await this.updateFile(binding.fileId, { remove: { revoked: binding.accountId } });
      }
    }
  }
}

/** What `Trust` needs of the client: the directory, checked against pins. */
export interface Directory {
  readonly transport: GatewayTransport;
  readonly profile: Profile;
  /** The account's identity from the directory, self-signature and fingerprint checked,
   * refused if pinned with another key. */
  getDirectory(accountId: string): Promise<PublicIdentity>;
  /** The same, without the pin check (an invitation binds what the code names). */
  directoryIdentity(accountId: string): Promise<PublicIdentity>;
}

/**
 * The rule, for one unlocked account in one session. Every use of another account's public
 * key goes through `identity` (authors, wrappers, grantees, members to seal to) or `granter`
 * (keyring entries).
 */
export class Trust {
  readonly client: Directory;
  readonly keys: IdentityKeys;
  readonly ownId: string;
  readonly store: TrustStore;
  private readonly checked = new Map<string, PublicIdentity>();
  private readonly scanned = new Set<string>();
  private readonly ownershipChecked = new Set<string>();

  constructor(client: Directory, identity: IdentityKeys) {
    this.client = client;
    this.keys = identity;
    this.ownId = identity.accountId;
    this.store = new TrustStore(client.profile);
    this.checked.set(this.ownId, identity.publicIdentity());
  }

  async reason(accountId: string, fileId?: string): Promise<Why | undefined> {
    return this.store.reason(accountId, this.ownId, fileId);
  }

  /** The account's identity from the directory, only if this device trusts it. */
  async identity(accountId: string, options: { fileId?: string; use?: string } = {}): Promise<PublicIdentity> {
    const use = options.use ?? "use its key";
    if ((await this.reason(accountId, options.fileId)) === undefined && options.fileId !== undefined) {
      await this.scanInvitations(options.fileId);
    }
    if ((await this.reason(accountId, options.fileId)) === undefined) throw new Untrusted(accountId, use);
    const cached = this.checked.get(accountId);
    if (cached !== undefined) return cached;
    const identity = await this.client.getDirectory(accountId); // refuses a changed pinned key
    const recorded = await this.store.recorded(accountId);
    if (recorded === undefined || compact(identity.fingerprintHex()) !== recorded) {
      throw new IdentityMismatch(`the public key of account ${accountId} CHANGED since this device trusted it: ` +
        `refusing to use it. Compare safety numbers in person again (\`ecrin verify ${accountId}\`)`);
    }
    this.checked.set(accountId, identity);
    return identity;
  }

  /** May this account hand this device keys of `fileId`? */
  async entitled(accountId: string, fileId: string): Promise<boolean> {
    const why = await this.reason(accountId, fileId);
    if (why === "self") return true;
    if ((await this.store.bindings(accountId)).some((b) => b.role === "inviter" && b.fileId === fileId)) return true;
    if (why !== "verified" || (await this.store.isRevoked(fileId, accountId))) return false;
    return ((await this.store.file(fileId)).granters ?? []).includes(accountId)
      || (await this.store.firstGranter(fileId, accountId));
  }

  /** The identity a keyring entry of `fileId` (of `scope`) is accepted from, or `Untrusted`. */
  async granter(accountId: string, fileId: string, scope?: string): Promise<PublicIdentity> {
    const identity = await this.identity(accountId, { use: "accept keys it signed" });
    if (accountId !== this.ownId && scope !== undefined) await this.learnOwnership(fileId, scope);
    if (!(await this.entitled(accountId, fileId))) {
      throw new Untrusted(accountId, "accept keys it signed for this patient file");
    }
    return identity;
  }

  /**
   * Before another account's key version of a file is accepted on a device that has not
   * recorded the file as its own (a second computer, a new profile, the web app after a
   * reload): the file is this account's when its keyring holds a first key version this
   * account signed for itself — only the file's creator has one, and no server can forge
   * it. Then no colleague becomes the file's "first granter" (docs/protocol.md §17).
   */
  async learnOwnership(fileId: string, scope: string): Promise<void> {
    if (this.ownershipChecked.has(fileId) || (await this.store.file(fileId)).owned) return;
    this.ownershipChecked.add(fileId);
    let body: unknown;
    try {
      body = await this.client.transport.json("GET", `/v1/keyrings/${fileId}/entries`, { params: { scope, version: 1 } });
    } catch (error) {
      if (error instanceof PermissionDenied || error instanceof NotFound) return; // a member added after version 1
      throw error;
    }
    const entries = isRecord(body) && Array.isArray(body.entries) ? body.entries : [];
    const own = this.checked.get(this.ownId)!;
    for (const raw of entries) {
      try {
        const entry = KeyringEntry.fromJSON(raw);
        if (entry.fileId !== fileId || entry.version !== 1 || entry.granterId !== this.ownId
          || entry.relationship !== "owner") continue; // an invitee also self-seals its keys
        openEntry(entry, this.keys, own);
      } catch {
        continue; // malformed, or not sealed and signed by this identity: proves nothing
      }
      await this.store.ownFile(fileId);
      return;
    }
  }

  // invitations

  /** On the invitee's device: the inviter named inside the opened payload. */
  async bindInviter(inviter: PublicIdentity, fingerprint: Uint8Array, fileId: string, invitationId: string): Promise<void> {
    if (compact(inviter.fingerprintHex()) !== Array.from(fingerprint, (b) => b.toString(16).padStart(2, "0")).join("")) {
      throw new IdentityMismatch(`the directory serves another key for account ${inviter.accountId} than the ` +
        "invitation names: refusing the invitation (the server substituted it)");
    }
    await this.store.bind({ accountId: inviter.accountId, fingerprint: inviter.fingerprintHex(), fileId, role: "inviter", invitationId });
  }

  /** On the inviter's devices: bind every account whose redemption proof checks. Done once
   * per file and session, where this account made invitations (the sharing service shows
   * them to the file's owner alone). */
  async scanInvitations(fileId: string): Promise<InviteeCheck[]> {
    if (this.scanned.has(fileId)) return [];
    this.scanned.add(fileId);
    let listed: unknown;
    try {
      listed = await this.client.transport.json("GET", "/v1/invitations", { params: { file_id: fileId } });
    } catch (error) {
      if (error instanceof PermissionDenied || error instanceof NotFound) return [];
      throw error;
    }
    if (!Array.isArray(listed)) throw new IntegrityError("the sharing service sent a malformed invitation list");
    const out: InviteeCheck[] = [];
    for (const raw of listed) {
      if (isRecord(raw) && raw.redeemed_by && String(raw.inviter_id) === this.ownId) {
        out.push(await this.checkInvitee(fileId, raw));
      }
    }
    return out;
  }

  private async checkInvitee(fileId: string, raw: Json): Promise<InviteeCheck> {
    const invitationId = String(raw.id);
    const accountId = String(raw.redeemed_by);
    try {
      const verifier = InvitationVerifier.fromJSON(raw.verifier);
      const proof = b64d(raw.redemption_proof, "redemption proof");
      const redeemer = await this.client.directoryIdentity(accountId);
      checkRedemption(verifier, this.keys, { lookupId: String(raw.lookup_id), fileId, redeemer, proof });
      await this.store.bind({ accountId, fingerprint: redeemer.fingerprintHex(), fileId, role: "invitee", invitationId });
    } catch (error) {
      // No proof, a proof that does not check, a key the server substituted: this account
      // stays unverified (reported by the sharing overview and by rotations).
      if (error instanceof EcrinError || error instanceof Error) return { invitationId, accountId, bound: false };
      throw error;
    }
    return { invitationId, accountId, bound: true };
  }
}
