/**
 * Key rotation after a revocation or an expiry (mirrors the rotation half of
 * `ecrin_client.sharing`): the sharing service queues the affected scopes; the next online
 * member allowed to rotate makes a new scope key version, seals it to every remaining member
 * this device trusts (the others are left out and named), then re-keys every record version
 * of the scope by re-wrapping its content key (`POST /v1/records/rekey`). Content and
 * metadata ciphertexts are never fetched nor re-encrypted, and the rotation is marked done
 * only once the re-keying finished: an interrupted one is finished by the next `sync`.
 */

import {
  DecryptionError, RecordHeader, rekeyRecordHeader, rotateScope, type Member, type Permission, type PublicIdentity,
  type Relationship, type Scope, type ScopeKey,
} from "./core.ts";
import { b64d, b64e, canonicalUuid } from "./encoding.ts";
import { IntegrityError, NotFound, PermissionDenied } from "./errors.ts";
import type { Records, Unreadable } from "./records.ts";

/** Items per `POST /v1/records/rekey` (the server takes up to 500, all or nothing). */
const REKEY_BATCH = 500;
/** Headers per `GET /v1/records/headers` page. */
const HEADERS_PAGE = 2000;

export interface Rotated {
  fileId: string;
  scope: Scope;
  reason: string;
  version: number;
  members: number;
  rekeyed: number;
  skipped: number;
  /** Members the new key was NOT sealed to, because this device cannot trust their key. */
  skippedMembers: string[];
  unreadable: Unreadable[];
  resumed: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;

export const permissions = (access: string): Set<Permission> =>
  new Set<Permission>(access === "append" ? ["read", "append"] : ["read"]);

/** Keyring entries carry whole seconds: the grant must say the same instant. */
export function whole(when: Date | string | undefined | null): Date | null {
  if (when === undefined || when === null || when === "") return null;
  const date = typeof when === "string" ? new Date(/[zZ]|[+-]\d\d:\d\d$/.test(when) ? when : `${when}Z`) : when;
  if (Number.isNaN(date.getTime())) throw new IntegrityError("the sharing service sent a malformed date");
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

export class Rotations {
  readonly records: Records;

  constructor(records: Records) {
    this.records = records;
  }

  private get t() {
    return this.records.client.transport;
  }

  get accountId(): string {
    return this.records.identity.accountId;
  }

  async pending(fileId?: string): Promise<Json[]> {
    const params = fileId ? { file_id: canonicalUuid(fileId, "patient file id") } : undefined;
    const body = await this.t.json<Json[]>("GET", "/v1/rotations", { params });
    if (!Array.isArray(body)) throw new IntegrityError("the sharing service sent a malformed rotation queue");
    return body;
  }

  /** Do every pending rotation this account may do (all files, or one). A rotation whose
   * keys are stored but whose re-keying was interrupted is finished, not redone. */
  async sync(fileId?: string): Promise<Rotated[]> {
    const queued = new Map<string, Json[]>();
    for (const item of await this.pending(fileId)) {
      if (!["clinical", "shared", "administrative"].includes(item?.scope)) {
        throw new IntegrityError("the sharing service sent a malformed rotation queue");
      }
      const key = `${canonicalUuid(item.file_id, "patient file id")} ${item.scope}`;
      queued.set(key, [...(queued.get(key) ?? []), item]);
    }
    const done: Rotated[] = [];
    for (const [key, items] of queued) {
      const [fid, scope] = key.split(" ") as [string, Scope];
      const reason = String(items[0]!.reason ?? "");
      const stored = items.map((i) => i.rotated_version).filter((v): v is number => Number.isInteger(v));
      if (stored.length === items.length) done.push(await this.finish(fid, scope, Math.max(...stored), reason));
      else done.push(await this.rotate(fid, scope, reason));
    }
    return done;
  }

  /** Re-key a scope to the key version a rotation stored, then mark it done. */
  async finish(fileId: string, scope: Scope, stored: number, reason = ""): Promise<Rotated> {
    const fid = canonicalUuid(fileId, "patient file id");
    const latest = await this.records.scopeKey(fid, scope);
    if (latest.version < stored) return this.rotate(fid, scope, reason);
    const unreadable: Unreadable[] = [];
    const { rekeyed, skipped } = await this.rekey(fid, scope, latest, unreadable);
    await this.done(fid, scope, latest.version);
    return { fileId: fid, scope, reason, version: latest.version, members: 0, rekeyed, skipped, skippedMembers: [], unreadable, resumed: true };
  }

  private async done(fileId: string, scope: Scope, version: number): Promise<void> {
    await this.t.request("POST", `/v1/rotations/${fileId}/${scope}/done`, { json: { version } });
  }

  /** The scope's members as the sharing service lists them, kept only where this device
   * trusts their key. -> (members to seal to, account ids left out) */
  private async members(fileId: string, scope: Scope): Promise<{ members: Member[]; skipped: string[] }> {
    const raw = await this.t.json<Json[]>("GET", `/v1/files/${fileId}/members`);
    if (!Array.isArray(raw)) throw new IntegrityError("the sharing service sent a malformed member list");
    const members: Member[] = [];
    const skipped: string[] = [];
    for (const m of raw) {
      const access = (m.scopes ?? {})[scope];
      if (access === undefined || access === null) continue;
      const account = canonicalUuid(m.account_id);
      if (await this.records.trust.store.isRevoked(fileId, account)) {
        skipped.push(account); // revoked here: listed again by the server
        continue;
      }
      let identity: PublicIdentity;
      try {
        identity = await this.records.trust.identity(account, { fileId, use: "receive the new keys" });
      } catch (error) {
        if (!(error instanceof IntegrityError)) throw error; // untrusted, or its key changed: never sealed to
        skipped.push(account);
        continue;
      }
      members.push({
        identity, terms: {
          relationship: String(m.relationship) as Relationship, permissions: permissions(String(access)),
          validFrom: whole(m.valid_from), validUntil: whole(m.valid_until),
        },
      });
    }
    if (!members.some((m) => m.identity.accountId === this.accountId)) {
      throw new PermissionDenied("this account is not a member of the scope it would rotate");
    }
    return { members, skipped };
  }

  /** A new version of one scope for the remaining members, then re-key its records. */
  async rotate(fileId: string, scope: Scope, reason = ""): Promise<Rotated> {
    const fid = canonicalUuid(fileId, "patient file id");
    const current = await this.records.scopeKey(fid, scope);
    const { members, skipped: leftOut } = await this.members(fid, scope);
    const rotation = rotateScope(current, members, { granter: this.records.identity });
    await this.t.request("POST", `/v1/keyrings/${fid}/entries`, {
      ok: [200, 201], json: { entries: rotation.entries.map((e) => e.toJSON()) },
    });
    await this.records.adoptKeys([rotation.scopeKey]);
    const unreadable: Unreadable[] = [];
    const { rekeyed, skipped } = await this.rekey(fid, scope, rotation.scopeKey, unreadable);
    // Only now is the rotation done: an interrupted re-keying stays pending, and the next
    // sync finishes it (a revoked member's old key never keeps opening records).
    await this.done(fid, scope, rotation.scopeKey.version);
    return {
      fileId: fid, scope, reason, version: rotation.scopeKey.version, members: members.length, rekeyed, skipped,
      skippedMembers: leftOut, unreadable, resumed: false,
    };
  }

  /**
   * Re-wrap the content key of every committed version of the scope's records that is on an
   * older key version. Each header is checked before it is re-signed: it names the record,
   * version, file and scope it was listed as, its signatures verify against identities this
   * device trusts, and its content key unwraps. Metadata and content are never fetched.
   */
  async rekey(fileId: string, scope: Scope, newKey: ScopeKey, unreadable: Unreadable[]): Promise<{ rekeyed: number; skipped: number }> {
    const params: Record<string, string | number | undefined> = {
      file_id: fileId, scope, below_key_version: newKey.version, limit: HEADERS_PAGE,
    };
    let rekeyed = 0;
    let skipped = 0;
    for (;;) {
      const page = await this.records.client.retrying(() => this.t.json<Json>("GET", "/v1/records/headers", { params }));
      const items = page?.items;
      const cursor = page?.next_cursor;
      if (!Array.isArray(items) || !(cursor === null || cursor === undefined || typeof cursor === "string")) {
        throw new IntegrityError("the server sent a malformed list of record headers");
      }
      let batch: Json[] = [];
      for (const raw of items) {
        let recordId: string, version: number, header: RecordHeader;
        try {
          recordId = canonicalUuid(raw.record_id, "record id");
          version = Number(raw.version);
          header = RecordHeader.fromBytes(b64d(raw.header, "header"));
        } catch {
          throw new IntegrityError("the server sent a malformed record header");
        }
        if (header.recordId !== recordId || header.recordVersion !== version || header.fileId !== fileId || header.scope !== scope) {
          skipped++;
          unreadable.push({ recordId, version, authorId: header.authorId, reason: "its header names another record, version, file or scope" });
          continue;
        }
        if (header.keyVersion >= newKey.version) continue;
        let oldKey: ScopeKey, author: PublicIdentity, wrapper: PublicIdentity;
        try {
          oldKey = await this.records.scopeKey(fileId, scope, header.keyVersion);
        } catch (error) {
          if (!(error instanceof NotFound)) throw error; // a version older than this device's membership
          skipped++;
          continue;
        }
        try {
          author = await this.records.identityOf(header.authorId, fileId);
          wrapper = await this.records.identityOf(header.wrapperId, fileId);
        } catch (error) {
          if (!(error instanceof IntegrityError)) throw error; // a signer this device cannot trust: never re-signed
          skipped++;
          continue;
        }
        let rekeyedHeader: RecordHeader;
        try {
          header.verify(author, wrapper);
          rekeyedHeader = rekeyRecordHeader(header, oldKey, newKey, this.records.identity);
        } catch (error) {
          if (!(error instanceof DecryptionError)) throw error;
          skipped++;
          unreadable.push({ recordId, version, authorId: header.authorId, reason: "its header does not verify or does not open with its scope key" });
          continue;
        }
        batch.push({ record_id: recordId, version, header: b64e(rekeyedHeader.toBytes()) });
        if (batch.length === REKEY_BATCH) {
          await this.post(batch);
          rekeyed += batch.length;
          batch = [];
        }
      }
      if (batch.length) {
        await this.post(batch);
        rekeyed += batch.length;
      }
      if (!cursor) break;
      params.cursor = cursor;
    }
    return { rekeyed, skipped };
  }

  /** One batch: all or nothing on the server, and applying it twice changes nothing, so a
   * busy server's 503 is waited out (Retry-After), not left to the next sync. */
  private async post(batch: Json[]): Promise<void> {
    await this.records.client.retrying(() => this.t.request("POST", "/v1/records/rekey", { json: { items: batch } }));
  }
}

/** Hook for writers: finish a file's pending rotations so new content never uses a key a
 * revoked or expired member still holds. `Records` calls it when the records API refused a
 * write with `rotation-pending`, not before every write (one request when nothing is pending). */
export async function rotateBeforeWrite(records: Records, fileId: string): Promise<Rotated[]> {
  return new Rotations(records).sync(fileId);
}
