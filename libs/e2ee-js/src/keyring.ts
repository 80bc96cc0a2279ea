/**
 * Scope keys and keyring entries (mirrors `ecrin_e2ee.keyring`).
 *
 * A scope key is 32 random bytes for one (patient file, scope, version). A keyring entry is
 * that key sealed to one member's X25519 key and signed by the granter's Ed25519 key.
 *
 * Sealed plaintext (53 bytes): `file_id(16) || scope(1) || version(u32be) || key(32)`,
 * sealed with libsodium `crypto_box_seal` (ephemeral X25519 key, nonce =
 * `BLAKE2b-192(epk || member_pk)`): `sealed_key` is 32 + 16 + 53 = 101 bytes.
 *
 * Signature: Ed25519 by the granter over `canonical("ecrin/keyring-entry/v1", file_id(16),
 * scope(1), version(u32be), member_id(16), member_fingerprint(32), relationship(ascii),
 * permissions(ascii, sorted, comma-separated), valid_from(u64be), valid_until(u64be),
 * granter_id(16), sealed_key)`; times are Unix seconds, 0 meaning unbounded.
 */

import { randomBytes } from "./_seams.ts";
import { SecretKey } from "./_secret.ts";
import { sodium } from "./_sodium.ts";
import {
  ascii, b64d, b64e, canonical, concat, equalBytes, field, fromTimestamp, parseUuid, readU32,
  timestamp, u32, u64, uuidBytes, uuidFromBytes, type Uuid,
} from "./_wire.ts";
import { DecryptionError, FormatError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { now } from "./_seams.ts";
import { verifySignature } from "./kdf.ts";

const ENTRY_LABEL = "ecrin/keyring-entry/v1";

/** The three key scopes of a patient file. */
export type Scope = "clinical" | "shared" | "administrative";
export const SCOPES: readonly Scope[] = ["clinical", "shared", "administrative"];
const SCOPE_CODES: Record<Scope, number> = { clinical: 1, shared: 2, administrative: 3 };

/** The byte that stands for a scope in binary formats. */
export function scopeCode(scope: Scope): number {
  const code = SCOPE_CODES[scope];
  if (code === undefined) throw new FormatError("unknown scope");
  return code;
}

export function scopeFromCode(code: number): Scope {
  const scope = SCOPES[code - 1];
  if (scope === undefined) throw new FormatError("unknown scope code");
  return scope;
}

export function parseScope(value: unknown): Scope {
  if (typeof value !== "string" || !(SCOPES as readonly string[]).includes(value)) {
    throw new FormatError("unknown scope");
  }
  return value as Scope;
}

export type Permission = "read" | "append";
export const PERMISSIONS: readonly Permission[] = ["read", "append"];

/** Why a member holds a key (mirrors the sharing service's grant relationships). */
export type Relationship =
  | "owner" | "care_team" | "replacement" | "secretary" | "patient" | "parent" | "guardian";
export const RELATIONSHIPS: readonly Relationship[] = [
  "owner", "care_team", "replacement", "secretary", "patient", "parent", "guardian",
];

/** The key of one (file, scope, version). `toBytes()` returns the 32 key bytes only. */
export class ScopeKey extends SecretKey {
  static override readonly SIZE = 32;
  static readonly BOUND_SIZE = 16 + 1 + 4 + 32;
  readonly fileId: Uuid;
  readonly scope: Scope;
  readonly version: number;

  constructor(fileId: Uuid, scope: Scope, version: number, key: Uint8Array) {
    super(key);
    if (!Number.isInteger(version) || version < 1 || version > 0xffffffff) {
      throw new RangeError("version must be a positive u32");
    }
    this.fileId = parseUuid(fileId);
    this.scope = parseScope(scope);
    this.version = version;
  }

  static generate(fileId: Uuid, scope: Scope, version = 1): ScopeKey {
    return new ScopeKey(fileId, scope, version, randomBytes(ScopeKey.SIZE));
  }

  /** `file_id(16) || scope(1) || version(u32be)`: what this key is for. */
  binding(): Uint8Array {
    return concat(uuidBytes(this.fileId), Uint8Array.of(scopeCode(this.scope)), u32(this.version));
  }

  /** `binding() || key`: the 53 bytes that are sealed or wrapped. */
  toBoundBytes(): Uint8Array {
    return concat(this.binding(), this.toBytes());
  }

  static fromBoundBytes(data: Uint8Array): ScopeKey {
    if (data.length !== ScopeKey.BOUND_SIZE) throw new FormatError("bound scope key has the wrong size");
    return new ScopeKey(uuidFromBytes(data.subarray(0, 16)), scopeFromCode(data[16]!),
      readU32(data, 17), data.subarray(21));
  }

  override equals(other: SecretKey): boolean {
    return other instanceof ScopeKey && equalBytes(this.toBoundBytes(), other.toBoundBytes());
  }

  override toString(): string {
    return `ScopeKey(file_id=${this.fileId}, scope=${this.scope}, version=${this.version}, <secret>)`;
  }
}

/** `crypto_box_seal` with the ephemeral key drawn from the seam (same wire format). */
export function seal(plaintext: Uint8Array, recipientPublic: Uint8Array): Uint8Array {
  const esk = randomBytes(32);
  const epk = sodium.crypto_scalarmult_base(esk);
  const nonce = sodium.crypto_generichash(24, concat(epk, recipientPublic), null);
  const out = concat(epk, sodium.crypto_box_easy(plaintext, nonce, recipientPublic, esk));
  esk.fill(0);
  return out;
}

function permissionsBytes(permissions: ReadonlySet<Permission>): Uint8Array {
  return ascii([...permissions].sort().join(","));
}

export interface KeyringEntryJson {
  format: number;
  file_id: string;
  scope: Scope;
  version: number;
  member_id: string;
  member_fingerprint: string;
  relationship: Relationship;
  permissions: Permission[];
  valid_from: number | null;
  valid_until: number | null;
  granter_id: string;
  sealed_key: string;
  signature: string;
}

export interface KeyringEntryFields {
  fileId: Uuid;
  scope: Scope;
  version: number;
  memberId: Uuid;
  memberFingerprint: Uint8Array;
  relationship: Relationship;
  permissions: Iterable<Permission>;
  validFrom: Date | null;
  validUntil: Date | null;
  granterId: Uuid;
  sealedKey: Uint8Array;
  signature: Uint8Array;
}

/** One scope key version sealed to one member, signed by the granter. */
export class KeyringEntry {
  static readonly FORMAT_VERSION = 1;
  static readonly SEALED_SIZE = 32 + 16 + ScopeKey.BOUND_SIZE;

  readonly fileId: Uuid;
  readonly scope: Scope;
  readonly version: number;
  readonly memberId: Uuid;
  readonly memberFingerprint: Uint8Array;
  readonly relationship: Relationship;
  readonly permissions: ReadonlySet<Permission>;
  readonly validFrom: Date | null;
  readonly validUntil: Date | null;
  readonly granterId: Uuid;
  readonly sealedKey: Uint8Array;
  readonly signature: Uint8Array;

  constructor(f: KeyringEntryFields) {
    if (f.memberFingerprint.length !== 32) throw new FormatError("member fingerprint must be 32 bytes");
    if (f.signature.length !== 64) throw new FormatError("signature must be 64 bytes");
    const permissions = new Set(f.permissions);
    if (permissions.size === 0) throw new FormatError("an entry needs at least one permission");
    for (const p of permissions) if (!PERMISSIONS.includes(p)) throw new FormatError("unknown permission");
    if (!RELATIONSHIPS.includes(f.relationship)) throw new FormatError("unknown relationship");
    if (!Number.isInteger(f.version) || f.version < 1 || f.version > 0xffffffff) {
      throw new FormatError("version must be a positive u32");
    }
    this.fileId = parseUuid(f.fileId);
    this.scope = parseScope(f.scope);
    this.version = f.version;
    this.memberId = parseUuid(f.memberId);
    this.memberFingerprint = Uint8Array.from(f.memberFingerprint);
    this.relationship = f.relationship;
    this.permissions = permissions;
    this.validFrom = f.validFrom;
    this.validUntil = f.validUntil;
    this.granterId = parseUuid(f.granterId);
    this.sealedKey = Uint8Array.from(f.sealedKey);
    this.signature = Uint8Array.from(f.signature);
    Object.freeze(this);
  }

  signedBytes(): Uint8Array {
    return canonical(ENTRY_LABEL,
      uuidBytes(this.fileId),
      Uint8Array.of(scopeCode(this.scope)),
      u32(this.version),
      uuidBytes(this.memberId),
      this.memberFingerprint,
      ascii(this.relationship),
      permissionsBytes(this.permissions),
      u64(timestamp(this.validFrom)),
      u64(timestamp(this.validUntil)),
      uuidBytes(this.granterId),
      this.sealedKey);
  }

  isValidAt(when: Date): boolean {
    if (this.validFrom !== null && when.getTime() < this.validFrom.getTime()) return false;
    return this.validUntil === null || when.getTime() < this.validUntil.getTime();
  }

  toJSON(): KeyringEntryJson {
    return {
      format: KeyringEntry.FORMAT_VERSION,
      file_id: this.fileId,
      scope: this.scope,
      version: this.version,
      member_id: this.memberId,
      member_fingerprint: b64e(this.memberFingerprint),
      relationship: this.relationship,
      permissions: [...this.permissions].sort(),
      valid_from: timestamp(this.validFrom) || null,
      valid_until: timestamp(this.validUntil) || null,
      granter_id: this.granterId,
      sealed_key: b64e(this.sealedKey),
      signature: b64e(this.signature),
    };
  }

  /** Parse (no verification: that happens in {@link openEntry}). */
  static fromJSON(obj: unknown): KeyringEntry {
    if (field(obj, "format") !== KeyringEntry.FORMAT_VERSION) {
      throw new FormatError("unsupported keyring entry format");
    }
    const version = field(obj, "version");
    if (typeof version !== "number" || !Number.isInteger(version)) throw new FormatError("version must be an integer");
    const permissions = field(obj, "permissions");
    if (!Array.isArray(permissions)) throw new FormatError("invalid enum value in keyring entry");
    const relationship = field(obj, "relationship");
    if (!RELATIONSHIPS.includes(relationship as Relationship)
      || permissions.some((p) => !PERMISSIONS.includes(p as Permission))) {
      throw new FormatError("invalid enum value in keyring entry");
    }
    const time = (name: string): Date | null => {
      const value = field(obj, name);
      if (value === null) return null;
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
        throw new FormatError(`${name} must be a positive integer or null`);
      }
      return fromTimestamp(value);
    };
    return new KeyringEntry({
      fileId: parseUuid(field(obj, "file_id")),
      scope: parseScope(field(obj, "scope")),
      version,
      memberId: parseUuid(field(obj, "member_id")),
      memberFingerprint: b64d(field(obj, "member_fingerprint"), { size: 32 }),
      relationship: relationship as Relationship,
      permissions: permissions as Permission[],
      validFrom: time("valid_from"),
      validUntil: time("valid_until"),
      granterId: parseUuid(field(obj, "granter_id")),
      sealedKey: b64d(field(obj, "sealed_key"), { what: "sealed_key" }),
      signature: b64d(field(obj, "signature"), { size: 64, what: "signature" }),
    });
  }
}

export interface SealOptions {
  relationship: Relationship;
  permissions: Iterable<Permission>;
  granter: IdentityKeys;
  validFrom?: Date | null;
  validUntil?: Date | null;
}

/**
 * Seal `scopeKey` to `member` and sign the entry as `granter`. `member` must already be
 * verified by the caller against what it pinned (`grantScopeKeys` does that).
 */
export function sealEntry(scopeKey: ScopeKey, member: PublicIdentity, options: SealOptions): KeyringEntry {
  member.verify();
  const sealed = seal(scopeKey.toBoundBytes(), member.encPublic);
  const fields: KeyringEntryFields = {
    fileId: scopeKey.fileId,
    scope: scopeKey.scope,
    version: scopeKey.version,
    memberId: member.accountId,
    memberFingerprint: member.fingerprint(),
    relationship: options.relationship,
    permissions: options.permissions,
    validFrom: options.validFrom ?? null,
    validUntil: options.validUntil ?? null,
    granterId: options.granter.accountId,
    sealedKey: sealed,
    signature: new Uint8Array(64),
  };
  const unsigned = new KeyringEntry(fields);
  return new KeyringEntry({ ...fields, signature: options.granter.sign(unsigned.signedBytes()) });
}

/**
 * Verify the granter's signature, then unseal and check the key's binding. `granter` must
 * be an identity the caller verified (pinned). The entry must name this member and this
 * member's current key, be inside its validity window at `at` (default: now), and the
 * sealed key must be bound to the entry's file, scope and version. Every failure throws
 * {@link DecryptionError}.
 */
export function openEntry(entry: KeyringEntry, memberKeys: IdentityKeys, granter: PublicIdentity,
  options: { at?: Date } = {}): ScopeKey {
  const when = options.at ?? now();
  const own = memberKeys.publicIdentity();
  if (entry.granterId !== granter.accountId
    || entry.memberId !== memberKeys.accountId
    || !equalBytes(entry.memberFingerprint, own.fingerprint())
    || !entry.isValidAt(when)
    || entry.sealedKey.length !== KeyringEntry.SEALED_SIZE
    || !verifySignature(granter.signPublic, entry.signedBytes(), entry.signature)) {
    throw new DecryptionError();
  }
  let key: ScopeKey;
  const secret = memberKeys.encryptionKeyBytes();
  try {
    const plain = sodium.crypto_box_seal_open(entry.sealedKey, own.encPublic, secret);
    key = ScopeKey.fromBoundBytes(plain);
    plain.fill(0);
  } catch {
    throw new DecryptionError();
  } finally {
    secret.fill(0);
  }
  if (key.fileId !== entry.fileId || key.scope !== entry.scope || key.version !== entry.version) {
    throw new DecryptionError();
  }
  return key;
}
