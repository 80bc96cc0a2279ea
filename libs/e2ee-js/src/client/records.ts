/**
 * Encrypted records of a patient file: create, version, list, read, stream, delete
 * (mirrors `ecrin_client.records`).
 *
 * Everything is encrypted and verified here, on the device, with the crypto core; the server
 * only ever receives the signed header, the padded metadata ciphertext and the content
 * ciphertext.
 *
 * *Uploads.* The header carries the digest of the whole content ciphertext and is sent with
 * the create, before the content. So content is first encrypted chunk by chunk into a spool
 * (a Blob in browsers, which they may page to disk; a temporary file in Node), then the
 * record is created and the spool sent in resumable pieces (`upload.ts`; up to 1 MiB in one
 * `PUT .../content`). Memory stays at a few chunks whatever the size. Small content travels
 * inside the create (one request).
 *
 * *Writing under the current key.* A write uses the scope's latest key this session knows and
 * is one request in steady state: no `GET /v1/rotations` first. The records API refuses new
 * content under a stale key version or while a rotation this member must do is pending; the
 * SDK then rotates or fetches the latest key and encrypts again (`underCurrentKey`).
 *
 * *Reading.* A version opens only if its header names the record, version, file and scope
 * asked for, verifies against the author's (and re-wrapper's) identity and unwraps with a
 * keyring entry signed by a granter entitled to hand this device that file's keys — every
 * identity trusted by this device's own records (`trust.ts`). The highest version seen of
 * each record and key is kept in the profile: a server that later serves an older one is
 * refused (rollback). Every failure is one `IntegrityError`; nothing unverified is returned.
 */

import {
  DecryptionError, KeyringEntry, openEntry, RecordDecryptor, RecordHeader, type IdentityKeys, type PublicIdentity,
  type Scope, type ScopeKey,
} from "./core.ts";
import type { Directory } from "./trust.ts";
import { Trust } from "./trust.ts";
import { decryptChunks, encryptInto, memorySpool, type Opening, type Spool } from "./content.ts";
import { b64d, b64e, canonicalUuid, fromUtf8, randomToken } from "./encoding.ts";
import { Conflict, EcrinError, integrityFailure, IntegrityError, InvalidInput, NotFound } from "./errors.ts";
import { checkMetadata, type RecordMetadata } from "./metadata.ts";
import type { KdfProfile } from "./kdf-policy.ts";
import type { SlowCrypto } from "./slow.ts";
import type { Profile } from "./state.ts";
import type { GatewayTransport } from "./transport.ts";
import { resumableUpload, ROW_BYTES, type UploadProgress } from "./upload.ts";

export const SCOPES: readonly Scope[] = ["clinical", "shared", "administrative"];
/** Content read into memory (notes, identities) is at most this big; stream the rest. */
export const MAX_IN_MEMORY = 4 << 20;
/** Content ciphertext up to this size travels inside the create request. */
export const INLINE_CONTENT_MAX = 256 << 10;
/** A write refused for its key is encrypted again under the current key at most this often. */
export const WRITE_ATTEMPTS = 3;
/** The records API's problems for a write under a key that must not be used any more. */
const STALE_KEY_PROBLEMS: ReadonlySet<string> = new Set(["rotation-pending", "key-version-not-current"]);
const PAGE = 200;

/** What `Records` needs of the client. */
export interface RecordsClient extends Directory {
  readonly transport: GatewayTransport;
  readonly profile: Profile;
  readonly slow: SlowCrypto;
  readonly kdfProfile: KdfProfile;
  retrying<T>(call: () => Promise<T>): Promise<T>;
}

/** One verified record version, its metadata decrypted. */
export interface RecordInfo {
  recordId: string;
  fileId: string;
  scope: Scope;
  version: number;
  currentVersion: number;
  keyVersion: number;
  authorId: string;
  createdAt?: string;
  updatedAt?: string;
  metadata: RecordMetadata;
}

/** A record that does not verify or open here: reported and skipped, never shown. */
export interface Unreadable {
  recordId: string;
  version?: number;
  authorId?: string;
  reason: string;
}

/** Where a new version's content comes from. A stream is read once; a function returning a
 * new stream each time lets a write refused for its key be encrypted again (`underCurrentKey`). */
export type Content = Uint8Array | Blob | ReadableStream<Uint8Array> | (() => ReadableStream<Uint8Array>);

export interface Opened {
  info: RecordInfo;
  header: RecordHeader;
  metadataCiphertext: Uint8Array;
}

type Json = Record<string, unknown>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a field of server JSON, checked by its caller
function field(obj: unknown, name: string): any {
  if (typeof obj !== "object" || obj === null || !(name in obj)) throw integrityFailure("the server's answer");
  return (obj as Json)[name];
}

function scopeOf(value: string): Scope {
  if (!(SCOPES as readonly string[]).includes(value)) throw new InvalidInput("scope must be clinical, shared or administrative");
  return value as Scope;
}

/** The profile's high-water mark of a file scope's key version (rollback detection). */
export const keyMark = (fileId: string, scope: Scope): string => `key:${fileId}:${scope}`;

export class Records {
  readonly client: RecordsClient;
  readonly identity: IdentityKeys;
  readonly trust: Trust;
  /** Records the listings of this session skipped because they do not verify here. */
  readonly unreadable: Unreadable[] = [];
  /** How new content is spooled before upload (default: a Blob; Node: `nodeFileSpool`). */
  spool: () => Spool;
  private readonly keys = new Map<string, ScopeKey>();
  private readonly latest = new Map<string, number>();

  constructor(client: RecordsClient, identity: IdentityKeys, options: { spool?: () => Spool } = {}) {
    this.client = client;
    this.identity = identity;
    this.trust = new Trust(client, identity);
    this.spool = options.spool ?? memorySpool;
  }

  private get t(): GatewayTransport {
    return this.client.transport;
  }

  // -- keys and identities ----------------------------------------------------------------

  /** Scope keys this device just made (a new file, a rotation): no need to fetch them back. */
  async adoptKeys(keys: ScopeKey[]): Promise<void> {
    const marks: Record<string, number> = {};
    for (const key of keys) {
      this.keys.set(`${key.fileId}:${key.scope}:${key.version}`, key);
      this.latest.set(`${key.fileId}:${key.scope}`, key.version);
      marks[keyMark(key.fileId, key.scope)] = key.version;
    }
    await this.client.profile.rememberVersions(marks);
  }

  /** A public identity this device trusts (`Trust.identity`), or `Untrusted`. */
  async identityOf(accountId: string, fileId?: string): Promise<PublicIdentity> {
    return this.trust.identity(accountId, { fileId });
  }

  /** My key of a file's scope (its latest version by default), from my keyring entries. */
  async scopeKey(fileId: string, scope: Scope, version?: number): Promise<ScopeKey> {
    if (version === undefined) version = this.latest.get(`${fileId}:${scope}`);
    if (version !== undefined) {
      const cached = this.keys.get(`${fileId}:${scope}:${version}`);
      if (cached !== undefined) return cached;
    }
    const body = await this.t.json("GET", `/v1/keyrings/${fileId}/entries`, { params: { scope, version } });
    return this.keyFromEntries(fileId, scope, version, body);
  }

  /**
   * My key of `scope` (`version`, or the latest the answer names) from a kms answer listing
   * my entries of one file (the single route's, or one item of `POST /v1/keyrings/batch`):
   * the rollback check of the latest version, a trusted and entitled granter, the entry's
   * binding. `marks`: the rollback mark is added there, for the caller to store with others.
   */
  async keyFromEntries(fileId: string, scope: Scope, version: number | undefined, body: unknown,
    marks?: Record<string, number>): Promise<ScopeKey> {
    const newestSeen = await this.client.profile.seenVersion(keyMark(fileId, scope));
    if (version === undefined) {
      const latest = (field(body, "versions") as Json | null)?.[scope];
      if (!Number.isInteger(latest)) throw new NotFound(`no ${scope} key of this patient file for you`);
      if ((latest as number) < newestSeen) {
        throw new IntegrityError(`the server offers ${scope} key version ${latest} of this patient file as the latest, ` +
          "older than one this device already used: a key rollback (a revoked member may hold it). Refusing it");
      }
      version = latest as number;
      this.latest.set(`${fileId}:${scope}`, version);
    }
    const entries = field(body, "entries");
    if (!Array.isArray(entries)) throw integrityFailure("the server's answer");
    for (const raw of entries) {
      let entry: KeyringEntry;
      try {
        entry = KeyringEntry.fromJSON(raw);
      } catch {
        throw integrityFailure("a keyring entry");
      }
      if (entry.fileId !== fileId || entry.scope !== scope || entry.version !== version) continue;
      // Only a granter this device trusts, and entitled to hand it this file's keys.
      const granter = await this.trust.granter(entry.granterId, fileId, scope);
      let key: ScopeKey;
      try {
        key = openEntry(entry, this.identity, granter);
      } catch {
        throw integrityFailure("a keyring entry");
      }
      this.keys.set(`${fileId}:${scope}:${version}`, key);
      if (marks === undefined) await this.client.profile.rememberVersions({ [keyMark(fileId, scope)]: version });
      else marks[keyMark(fileId, scope)] = version;
      return key;
    }
    if (version === newestSeen && newestSeen > 0) {
      throw new IntegrityError(`the server withholds ${scope} key version ${version} of this patient file, ` +
        "which it already showed this device: refusing to go on without it");
    }
    throw new NotFound(`no ${scope} key version ${version} of this patient file for you`);
  }

  // -- opening what the server sends --------------------------------------------------------

  /** Check and decrypt one version's header and metadata (not its content); also for
   * identity-pages.ts, which opens the items of a batch read as a single read does. */
  async open(raw: unknown, options: { record?: Json; expectRecord?: string; expectVersion?: number }): Promise<Opened> {
    let header: RecordHeader;
    let metadataCiphertext: Uint8Array;
    let claimedVersion: number;
    let claimedRecord: string;
    try {
      header = RecordHeader.fromBytes(b64d(field(raw, "header"), "header"));
      metadataCiphertext = b64d(field(raw, "metadata_ciphertext"), "metadata");
      claimedVersion = Number(field(raw, "version"));
      claimedRecord = canonicalUuid(field(raw, "record_id"));
    } catch {
      throw integrityFailure();
    }
    const wanted = options.expectRecord ?? claimedRecord;
    if (header.recordId !== wanted || claimedRecord !== wanted || header.recordVersion !== claimedVersion
      || (options.expectVersion !== undefined && header.recordVersion !== options.expectVersion)) {
      throw integrityFailure();
    }
    const record = options.record;
    if (record !== undefined && (header.fileId !== String(record.file_id) || header.scope !== record.scope)) {
      throw integrityFailure();
    }
    const decryptor = await this.decryptorFor(header, metadataCiphertext);
    let metadata: RecordMetadata;
    try {
      metadata = checkMetadata(decryptor.metadata);
    } catch {
      throw integrityFailure();
    }
    const info: RecordInfo = {
      recordId: header.recordId, fileId: header.fileId, scope: header.scope, version: header.recordVersion,
      currentVersion: record !== undefined ? Number(record.current_version ?? header.recordVersion) : header.recordVersion,
      keyVersion: header.keyVersion, authorId: header.authorId, metadata,
    };
    const created = (raw as Json).created_at;
    if (typeof created === "string") info.createdAt = created;
    if (typeof record?.updated_at === "string") info.updatedAt = record.updated_at;
    return { info, header, metadataCiphertext };
  }

  private async decryptorFor(header: RecordHeader, metadataCiphertext: Uint8Array): Promise<RecordDecryptor> {
    return (await this.opening(header, metadataCiphertext)).decryptor;
  }

  /** Everything needed to open a version, its header and metadata checked here. */
  async opening(header: RecordHeader, metadataCiphertext: Uint8Array): Promise<Opening> {
    const scopeKey = await this.scopeKey(header.fileId, header.scope, header.keyVersion);
    const author = await this.identityOf(header.authorId, header.fileId);
    const wrapper = await this.identityOf(header.wrapperId, header.fileId);
    try {
      return { decryptor: new RecordDecryptor(header, metadataCiphertext, { scopeKey, author, wrapper }), metadataCiphertext, scopeKey, author, wrapper };
    } catch {
      throw integrityFailure();
    }
  }

  async checkNotOlder(recordId: string, version: number): Promise<void> {
    if (version < (await this.client.profile.seenVersion(recordId))) {
      throw new IntegrityError(`the server serves version ${version} of record ${recordId}, older than one this ` +
        "device already saw: a rollback. Refusing it");
    }
  }

  private async record(recordId: string): Promise<Json> {
    const body = await this.t.json<Json>("GET", `/v1/records/${recordId}`);
    if (String(body.record_id) !== recordId) throw integrityFailure();
    return body;
  }

  // -- reads ------------------------------------------------------------------------------

  /** The latest version, verified; refused if older than one seen before. */
  async get(recordId: string): Promise<RecordInfo> {
    const rid = canonicalUuid(recordId, "record id");
    const body = await this.record(rid);
    const current = Number(field(body, "current_version"));
    await this.checkNotOlder(rid, current);
    const opened = await this.open(field(body, "version"), { record: body, expectRecord: rid, expectVersion: current });
    await this.client.profile.rememberVersions({ [rid]: current });
    return opened.info;
  }

  /**
   * Every record of the file I may read (newest first), metadata decrypted. A record that
   * does not verify (or whose author this device cannot trust) is added to `unreadable` and
   * skipped; the rest of the listing goes on. A listing the server garbled still fails.
   */
  async list(fileId: string, scope?: Scope): Promise<RecordInfo[]> {
    const fid = canonicalUuid(fileId, "patient file id");
    const params: Record<string, string | number | undefined> = { file_id: fid, limit: PAGE, scope: scope && scopeOf(scope) };
    const out: RecordInfo[] = [];
    for (;;) {
      const page = await this.t.json<Json>("GET", "/v1/records", { params });
      const items = field(page, "items");
      if (!Array.isArray(items)) throw integrityFailure("the record list");
      for (const item of items as Json[]) {
        if (String(item?.file_id) !== fid) throw integrityFailure("the record list");
        try {
          const current = Number(field(item, "current_version"));
          const rid = canonicalUuid(field(item, "record_id"), "record id");
          await this.checkNotOlder(rid, current);
          out.push((await this.open(field(item, "version"), { record: item, expectRecord: rid, expectVersion: current })).info);
        } catch (error) {
          if (!(error instanceof EcrinError)) throw error;
          this.unreadable.push(unreadable(item, error instanceof IntegrityError ? error : integrityFailure()));
        }
      }
      const cursor = page.next_cursor;
      if (!cursor) break;
      params.cursor = String(cursor);
    }
    await this.client.profile.rememberVersions(Object.fromEntries(out.map((r) => [r.recordId, r.version])));
    return out;
  }

  /** Every committed version, newest first, each verified. */
  async history(recordId: string): Promise<RecordInfo[]> {
    const rid = canonicalUuid(recordId, "record id");
    const body = await this.record(rid);
    const versions: RecordInfo[] = [];
    const params: Record<string, string | number | undefined> = { limit: PAGE };
    for (;;) {
      const page = await this.t.json<Json>("GET", `/v1/records/${rid}/versions`, { params });
      const items = field(page, "items");
      if (!Array.isArray(items)) throw integrityFailure("the version history");
      for (const raw of items) versions.push((await this.open(raw, { record: body, expectRecord: rid })).info);
      const before = page.next_before;
      if (!before) break;
      params.before = String(before);
    }
    const numbers = versions.map((v) => v.version);
    const highest = Math.max(...numbers);
    if (numbers.length === 0 || highest !== Number(field(body, "current_version")) || new Set(numbers).size !== numbers.length) {
      throw integrityFailure("the version history");
    }
    await this.checkNotOlder(rid, highest);
    await this.client.profile.rememberVersions({ [rid]: highest });
    return versions;
  }

  private async version(rid: string, version?: number): Promise<Opened> {
    const body = await this.record(rid);
    const current = Number(field(body, "current_version"));
    await this.checkNotOlder(rid, current);
    const wanted = version ?? current;
    const raw = version === undefined ? field(body, "version")
      : await this.t.json("GET", `/v1/records/${rid}/versions/${wanted}`);
    const opened = await this.open(raw, { record: body, expectRecord: rid, expectVersion: wanted });
    await this.client.profile.rememberVersions({ [rid]: current });
    return opened;
  }

  /**
   * A version's content as a stream of verified plaintext. Each chunk is authenticated before
   * it is passed on; a stream the server cut, extended or altered errors (an
   * `IntegrityError`) instead of ending, so a consumer that writes to a file keeps it only
   * once the stream ended normally (`node-files.ts` does: temporary file, then rename).
   */
  async openContent(recordId: string, version?: number): Promise<{ info: RecordInfo; content: ReadableStream<Uint8Array> }> {
    const opened = await this.version(canonicalUuid(recordId, "record id"), version);
    return { info: opened.info, content: await this.content(opened) };
  }

  private async content(opened: Opened): Promise<ReadableStream<Uint8Array>> {
    const opening = await this.opening(opened.header, opened.metadataCiphertext);
    const worker = await this.client.slow.worker?.();
    const path = `/v1/records/${opened.info.recordId}/versions/${opened.info.version}/content`;
    return decryptChunks(opening, await this.t.stream("GET", path), worker);
  }

  /** A small record's content (a note), in memory, returned only once fully verified. */
  async read(recordId: string, version?: number): Promise<{ info: RecordInfo; content: Uint8Array }> {
    const rid = canonicalUuid(recordId, "record id");
    const opened = await this.version(rid, version);
    if (opened.info.metadata.size > MAX_IN_MEMORY) throw new InvalidInput("this record is large: stream it (openContent)");
    const content = await this.content(opened);
    return { info: opened.info, content: new Uint8Array(await new Response(content).arrayBuffer()) };
  }

  /** `read`, parsed as JSON (notes, identities). */
  async readJson(recordId: string, version?: number): Promise<{ info: RecordInfo; value: unknown }> {
    const { info, content } = await this.read(recordId, version);
    try {
      return { info, value: JSON.parse(fromUtf8(content)) };
    } catch {
      throw integrityFailure();
    }
  }

  // -- writes ------------------------------------------------------------------------------

  /**
   * Run `write` with the scope's latest key this device knows: in steady state the write is one
   * request (mirrors `_under_current_key` of `ecrin_client.records`). New content never uses a
   * key a revoked or expired member still holds, and the records API enforces it: it refuses a
   * header under another key version than the scope's current one (`key-version-not-current`:
   * another device rotated; fetch the new key) and, from a member who rotates, any write while
   * a rotation of the scope is pending (`rotation-pending`: finish the file's pending rotations
   * here, then write under the new key). Nothing was stored by a refused attempt; each retry
   * encrypts again, into a new spool. A `ReadableStream` can be read only once: its refusal is
   * thrown once the rotation is done (or the stale key forgotten), so that calling again with
   * the content goes through.
   */
  private async underCurrentKey<T>(fileId: string, scope: Scope, content: Content,
    write: (scopeKey: ScopeKey) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const scopeKey = await this.scopeKey(fileId, scope);
      try {
        return await write(scopeKey);
      } catch (error) {
        if (!(error instanceof Conflict) || !STALE_KEY_PROBLEMS.has(error.slug ?? "") || attempt === WRITE_ATTEMPTS) throw error;
        if (error.slug === "rotation-pending") {
          // Rotate from the kms's latest versions, not this session's: adoptKeys then
          // remembers the new ones, so the next attempt needs no key fetch.
          for (const each of SCOPES) this.latest.delete(`${fileId}:${each}`);
          const { rotateBeforeWrite } = await import("./rotation.ts"); // rotation builds on Records
          await rotateBeforeWrite(this, fileId);
        } else {
          this.latest.delete(`${fileId}:${scope}`); // ask the kms for the latest
        }
        if (!(content instanceof Uint8Array || content instanceof Blob || typeof content === "function")) throw error;
      }
    }
  }

  /** A new record (version 1): encrypt, create (idempotent), upload, commit. `recordId`:
   * chosen beforehand (a patient's identity record, named in its file). */
  async create(fileId: string, scope: Scope, metadata: RecordMetadata, content: Content,
    options: { recordId?: string; onProgress?: UploadProgress } = {}): Promise<RecordInfo> {
    const fid = canonicalUuid(fileId, "patient file id");
    const checkedScope = scopeOf(scope);
    checkMetadata(metadata);
    const rid = options.recordId === undefined ? crypto.randomUUID() : canonicalUuid(options.recordId, "record id");
    return this.underCurrentKey(fid, checkedScope, content, async (scopeKey) => {
      const sealed = await this.sealed(fid, rid, 1, scopeKey, metadata, content);
      try {
        const payload = { record_id: rid, file_id: fid, scope: scopeKey.scope, ...sealed.versionBody() };
        const key = randomToken(); // the same for every resend of this encryption
        const created = await this.client.retrying(() => this.t.json<Json>("POST", "/v1/records", {
          json: payload, ok: [201], headers: { "idempotency-key": key },
        }));
        if (sealed.inline === undefined) await this.upload(rid, 1, sealed.blob, options.onProgress);
        else options.onProgress?.(sealed.length, sealed.length);
        await this.client.profile.rememberVersions({ [rid]: 1 });
        return written(sealed.header, metadata, created, 1);
      } finally {
        await sealed.discard();
      }
    });
  }

  /** A new version of a record (If-Match on the version this device last verified). */
  async addVersion(recordId: string, metadata: RecordMetadata, content: Content,
    options: { onProgress?: UploadProgress } = {}): Promise<RecordInfo> {
    const current = await this.get(recordId);
    checkMetadata(metadata);
    const version = current.currentVersion + 1;
    return this.underCurrentKey(current.fileId, current.scope, content, async (scopeKey) => {
      const sealed = await this.sealed(current.fileId, current.recordId, version, scopeKey, metadata, content);
      try {
        const created = await this.t.json<Json>("POST", `/v1/records/${current.recordId}/versions`, {
          ok: [201], headers: { "if-match": `"v${current.currentVersion}"` }, json: sealed.versionBody(),
        });
        if (sealed.inline === undefined) await this.upload(current.recordId, version, sealed.blob, options.onProgress);
        else options.onProgress?.(sealed.length, sealed.length);
        await this.client.profile.rememberVersions({ [current.recordId]: version });
        return written(sealed.header, metadata, created, version);
      } finally {
        await sealed.discard();
      }
    });
  }

  /** Tombstone the record; If-Match on the latest version, verified first. */
  async delete(recordId: string): Promise<RecordInfo> {
    const current = await this.get(recordId);
    await this.t.request("DELETE", `/v1/records/${current.recordId}`, {
      ok: [200, 204], headers: { "if-match": `"v${current.currentVersion}"` },
    });
    return current;
  }

  private async sealed(fileId: string, recordId: string, version: number, scopeKey: ScopeKey, metadata: RecordMetadata,
    content: Content): Promise<Sealed> {
    const spool = this.spool();
    try {
      const { header, metadataCiphertext, length } = await encryptInto(spool, {
        fileId, recordId, recordVersion: version, scopeKey, author: this.identity, metadata,
      }, typeof content === "function" ? content() : content, await this.client.slow.worker?.());
      const blob = await spool.finish();
      const inline = length <= INLINE_CONTENT_MAX ? new Uint8Array(await blob.arrayBuffer()) : undefined;
      return new Sealed(header, metadataCiphertext, length, blob, inline, () => spool.discard());
    } catch (error) {
      await spool.discard();
      if (error instanceof DecryptionError) throw integrityFailure();
      throw error;
    }
  }

  /** Content over one server row goes up resumably (`upload.ts`: a cut connection costs one
   * piece, progress counts what the server acknowledged); one row or less in one PUT. */
  private async upload(recordId: string, version: number, blob: Blob, onProgress?: UploadProgress): Promise<void> {
    if (blob.size > ROW_BYTES) {
      await resumableUpload(this.t, recordId, version, blob, { onProgress });
      return;
    }
    await this.client.retrying(() => this.t.request("PUT", `/v1/records/${recordId}/versions/${version}/content`, {
      ok: [200, 204], body: blob, headers: { "content-type": "application/octet-stream" },
    }));
    onProgress?.(blob.size, blob.size);
  }
}

/** An encrypted version ready to send. */
class Sealed {
  readonly header: RecordHeader;
  readonly metadataCiphertext: Uint8Array;
  readonly length: number;
  readonly blob: Blob;
  /** The whole content ciphertext when small enough to travel inline. */
  readonly inline: Uint8Array | undefined;
  readonly discard: () => Promise<void>;

  constructor(header: RecordHeader, metadataCiphertext: Uint8Array, length: number, blob: Blob,
    inline: Uint8Array | undefined, discard: () => Promise<void>) {
    this.header = header;
    this.metadataCiphertext = metadataCiphertext;
    this.length = length;
    this.blob = blob;
    this.inline = inline;
    this.discard = discard;
  }

  versionBody(): Json {
    const body: Json = {
      header: b64e(this.header.toBytes()), metadata_ciphertext: b64e(this.metadataCiphertext), content_length: this.length,
    };
    if (this.inline !== undefined) body.content = b64e(this.inline);
    return body;
  }
}

function written(header: RecordHeader, metadata: RecordMetadata, created: Json, version: number): RecordInfo {
  const info: RecordInfo = {
    recordId: header.recordId, fileId: header.fileId, scope: header.scope, version, currentVersion: version,
    keyVersion: header.keyVersion, authorId: header.authorId, metadata,
  };
  if (typeof created.created_at === "string") info.createdAt = created.created_at;
  if (typeof created.updated_at === "string") info.updatedAt = created.updated_at;
  return info;
}

/** What can be said of a record that failed, from the server's claims (only to name it). */
function unreadable(raw: Json, error: EcrinError): Unreadable {
  const version = raw?.version as Json | undefined;
  const out: Unreadable = { recordId: String(raw?.record_id ?? "?"), reason: error.message };
  if (typeof version === "object" && version !== null) {
    if (Number.isInteger(version.version)) out.version = version.version as number;
    try {
      out.authorId = RecordHeader.fromBytes(b64d(version.header, "header")).authorId;
    } catch {
      // unparseable: named by its id only
    }
  }
  return out;
}
