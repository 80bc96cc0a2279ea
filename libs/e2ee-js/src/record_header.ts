/**
 * The signed record header (mirrors `ecrin_e2ee.record_header`): 410 bytes in format 1.
 *
 *     off  len  field
 *       0    4  magic "ECRH"
 *       4    1  format version (1)
 *       5   16  file_id
 *      21   16  record_id
 *      37    4  record_version (u32)
 *      41    1  scope (1 clinical, 2 shared, 3 administrative)
 *      42   16  author_id
 *      58   24  secretstream header
 *      82    4  chunk_size (u32, 65536)
 *      86    8  padded_length (u64)
 *      94   32  metadata_digest = BLAKE2b-256(person "ecrin-meta-dgst", metadata ciphertext)
 *     126   32  content_digest  = SHA-256("ecrin-content-v1" || chunk_0 || chunk_1 ...)
 *     158   32  dek_commitment  = KDF(DEK, "ecrin-dek-commit")
 *     190   64  author_signature: Ed25519(author, canonical("ecrin/record-author/v1", bytes 0..190))
 *     254    4  key_version (u32)
 *     258   16  wrapper_id
 *     274   24  wrap_nonce
 *     298   48  wrapped_dek = AEAD(scope key, wrap_nonce, DEK,
 *                   canonical("ecrin/dek-wrap/v1", bytes 0..190, key_version(u32)))
 *     346   64  wrap_signature: Ed25519(wrapper, canonical("ecrin/record-wrap/v1", bytes 0..346))
 *
 * Bytes 0..190 are the immutable core signed by the author; re-keying replaces the wrap.
 */

import { aeadDecrypt, aeadEncrypt } from "./_aead.ts";
import { randomBytes } from "./_seams.ts";
import {
  b64d, b64e, canonical, concat, deriveKey, equalBytes, field, parseUuid, readU32, readU64, u32, u64,
  uuidBytes, uuidFromBytes, type Uuid,
} from "./_wire.ts";
import { DecryptionError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { verifySignature } from "./kdf.ts";
import { ScopeKey, scopeCode, scopeFromCode, type Scope } from "./keyring.ts";

export const MAGIC = Uint8Array.of(0x45, 0x43, 0x52, 0x48); // "ECRH"
export const FORMAT_VERSION = 1;
export const CORE_SIZE = 190;
export const IDENTITY_SIZE = 58;
export const SIGNED_WRAP_SIZE = 346;
export const HEADER_SIZE = 410;
const AUTHOR_LABEL = "ecrin/record-author/v1";
const WRAP_LABEL = "ecrin/record-wrap/v1";
const DEK_LABEL = "ecrin/dek-wrap/v1";
const COMMIT_CONTEXT = "ecrin-dek-commit";

export function dekCommitment(dek: Uint8Array): Uint8Array {
  return deriveKey(dek, COMMIT_CONTEXT);
}

export interface RecordHeaderFields {
  fileId: Uuid;
  recordId: Uuid;
  recordVersion: number;
  scope: Scope;
  authorId: Uuid;
  streamHeader: Uint8Array;
  chunkSize: number;
  paddedLength: number;
  metadataDigest: Uint8Array;
  contentDigest: Uint8Array;
  dekCommitment: Uint8Array;
  authorSignature: Uint8Array;
  keyVersion: number;
  wrapperId: Uuid;
  wrapNonce: Uint8Array;
  wrappedDek: Uint8Array;
  wrapSignature: Uint8Array;
  formatVersion?: number;
}

export interface RecordHeaderJson {
  file_id: string;
  record_id: string;
  record_version: number;
  scope: Scope;
  key_version: number;
  author_id: string;
  wrapper_id: string;
  header: string;
}

const SIZES: [keyof RecordHeaderFields, number][] = [
  ["streamHeader", 24], ["metadataDigest", 32], ["contentDigest", 32], ["dekCommitment", 32],
  ["authorSignature", 64], ["wrapNonce", 24], ["wrappedDek", 48], ["wrapSignature", 64],
];

/** A parsed record header. Parsing never verifies; {@link RecordHeader.verify} does. */
export class RecordHeader implements RecordHeaderFields {
  static readonly SIZE = HEADER_SIZE;
  readonly fileId: Uuid;
  readonly recordId: Uuid;
  readonly recordVersion: number;
  readonly scope: Scope;
  readonly authorId: Uuid;
  readonly streamHeader: Uint8Array;
  readonly chunkSize: number;
  readonly paddedLength: number;
  readonly metadataDigest: Uint8Array;
  readonly contentDigest: Uint8Array;
  readonly dekCommitment: Uint8Array;
  readonly authorSignature: Uint8Array;
  readonly keyVersion: number;
  readonly wrapperId: Uuid;
  readonly wrapNonce: Uint8Array;
  readonly wrappedDek: Uint8Array;
  readonly wrapSignature: Uint8Array;
  readonly formatVersion: number;

  constructor(f: RecordHeaderFields) {
    for (const [name, size] of SIZES) {
      if ((f[name] as Uint8Array).length !== size) throw new RangeError(`${name} must be ${size} bytes`);
    }
    this.fileId = parseUuid(f.fileId);
    this.recordId = parseUuid(f.recordId);
    this.recordVersion = f.recordVersion;
    this.scope = f.scope;
    this.authorId = parseUuid(f.authorId);
    this.streamHeader = f.streamHeader;
    this.chunkSize = f.chunkSize;
    this.paddedLength = f.paddedLength;
    this.metadataDigest = f.metadataDigest;
    this.contentDigest = f.contentDigest;
    this.dekCommitment = f.dekCommitment;
    this.authorSignature = f.authorSignature;
    this.keyVersion = f.keyVersion;
    this.wrapperId = parseUuid(f.wrapperId);
    this.wrapNonce = f.wrapNonce;
    this.wrappedDek = f.wrappedDek;
    this.wrapSignature = f.wrapSignature;
    this.formatVersion = f.formatVersion ?? FORMAT_VERSION;
    Object.freeze(this);
  }

  /** A copy with some fields replaced. */
  with(changes: Partial<RecordHeaderFields>): RecordHeader {
    return new RecordHeader({ ...this, ...changes });
  }

  coreBytes(): Uint8Array {
    return concat(
      MAGIC, Uint8Array.of(this.formatVersion), uuidBytes(this.fileId), uuidBytes(this.recordId),
      u32(this.recordVersion), Uint8Array.of(scopeCode(this.scope)), uuidBytes(this.authorId),
      this.streamHeader, u32(this.chunkSize), u64(this.paddedLength), this.metadataDigest,
      this.contentDigest, this.dekCommitment);
  }

  /** Bytes 0..58 (format, ids, version, scope, author): bound into chunks and metadata. */
  identityBytes(): Uint8Array {
    return this.coreBytes().subarray(0, IDENTITY_SIZE);
  }

  private wrapFields(): Uint8Array {
    return concat(u32(this.keyVersion), uuidBytes(this.wrapperId), this.wrapNonce, this.wrappedDek);
  }

  toBytes(): Uint8Array {
    return concat(this.coreBytes(), this.authorSignature, this.wrapFields(), this.wrapSignature);
  }

  /** Parse; any malformation throws {@link DecryptionError} (it came from a server). */
  static fromBytes(data: Uint8Array): RecordHeader {
    if (!(data instanceof Uint8Array) || data.length !== HEADER_SIZE) throw new DecryptionError();
    const d = Uint8Array.from(data);
    if (!equalBytes(d.subarray(0, 4), MAGIC) || d[4] !== FORMAT_VERSION) throw new DecryptionError();
    try {
      return new RecordHeader({
        fileId: uuidFromBytes(d.subarray(5, 21)),
        recordId: uuidFromBytes(d.subarray(21, 37)),
        recordVersion: readU32(d, 37),
        scope: scopeFromCode(d[41]!),
        authorId: uuidFromBytes(d.subarray(42, 58)),
        streamHeader: d.slice(58, 82),
        chunkSize: readU32(d, 82),
        paddedLength: readU64(d, 86),
        metadataDigest: d.slice(94, 126),
        contentDigest: d.slice(126, 158),
        dekCommitment: d.slice(158, 190),
        authorSignature: d.slice(190, 254),
        keyVersion: readU32(d, 254),
        wrapperId: uuidFromBytes(d.subarray(258, 274)),
        wrapNonce: d.slice(274, 298),
        wrappedDek: d.slice(298, 346),
        wrapSignature: d.slice(346, 410),
        formatVersion: d[4]!,
      });
    } catch {
      throw new DecryptionError();
    }
  }

  /** The ids in the clear (for the server's indexes) and the whole header in base64url. */
  toJSON(): RecordHeaderJson {
    return {
      file_id: this.fileId,
      record_id: this.recordId,
      record_version: this.recordVersion,
      scope: this.scope,
      key_version: this.keyVersion,
      author_id: this.authorId,
      wrapper_id: this.wrapperId,
      header: b64e(this.toBytes()),
    };
  }

  /** Parse the `header` field and check the clear ids agree with it (else DecryptionError). */
  static fromJSON(obj: unknown): RecordHeader {
    let header: RecordHeader;
    let clear: unknown[];
    try {
      header = RecordHeader.fromBytes(b64d(field(obj, "header"), { what: "header" }));
      clear = [
        parseUuid(field(obj, "file_id")), parseUuid(field(obj, "record_id")),
        field(obj, "record_version"), field(obj, "scope"), field(obj, "key_version"),
        parseUuid(field(obj, "author_id")), parseUuid(field(obj, "wrapper_id")),
      ];
    } catch {
      throw new DecryptionError();
    }
    const expected = [header.fileId, header.recordId, header.recordVersion, header.scope,
      header.keyVersion, header.authorId, header.wrapperId];
    if (expected.some((v, i) => v !== clear[i])) throw new DecryptionError();
    return header;
  }

  authorMessage(): Uint8Array {
    return canonical(AUTHOR_LABEL, this.coreBytes());
  }

  wrapMessage(): Uint8Array {
    return canonical(WRAP_LABEL, concat(this.coreBytes(), this.authorSignature, this.wrapFields()));
  }

  /**
   * Check the author signature and the wrap signature; throws {@link DecryptionError}.
   * `wrapper` is needed only for a re-keyed header (wrapper_id != author_id); the caller
   * must have verified both identities (pinned).
   */
  verify(author: PublicIdentity, wrapper?: PublicIdentity | null): void {
    const w = wrapper ?? author;
    if (author.accountId !== this.authorId || w.accountId !== this.wrapperId
      || !verifySignature(author.signPublic, this.authorMessage(), this.authorSignature)
      || !verifySignature(w.signPublic, this.wrapMessage(), this.wrapSignature)) {
      throw new DecryptionError();
    }
  }

  /** A copy whose DEK is wrapped under `scopeKey` and signed by `signer`. */
  withWrap(scopeKey: ScopeKey, dek: Uint8Array, signer: IdentityKeys): RecordHeader {
    if (scopeKey.fileId !== this.fileId || scopeKey.scope !== this.scope) {
      throw new RangeError("scope key belongs to another file or scope");
    }
    const nonce = randomBytes(24);
    const wrapped = aeadEncrypt(dek, dekAd(this.coreBytes(), scopeKey.version), nonce, scopeKey.toBytes());
    const unsigned = this.with({
      keyVersion: scopeKey.version, wrapperId: signer.accountId, wrapNonce: nonce, wrappedDek: wrapped,
    });
    return unsigned.with({ wrapSignature: signer.sign(unsigned.wrapMessage()) });
  }
}

function dekAd(core: Uint8Array, keyVersion: number): Uint8Array {
  return canonical(DEK_LABEL, core, u32(keyVersion));
}

/** Unwrap the DEK and check it against the author's commitment; DecryptionError. */
export function unwrapDek(header: RecordHeader, scopeKey: ScopeKey): Uint8Array {
  if (scopeKey.fileId !== header.fileId || scopeKey.scope !== header.scope
    || scopeKey.version !== header.keyVersion) {
    throw new DecryptionError();
  }
  const dek = aeadDecrypt(header.wrappedDek, dekAd(header.coreBytes(), header.keyVersion),
    header.wrapNonce, scopeKey.toBytes());
  if (!equalBytes(dekCommitment(dek), header.dekCommitment)) throw new DecryptionError();
  return dek;
}

