/**
 * Encrypted records (mirrors `ecrin_e2ee.records`): streamed chunked content, padded
 * encrypted metadata, signed header. Byte formats in `docs/protocol.md` §6.
 *
 * Per record version a random 32-byte DEK; `KDF(DEK, "ecrin-stream-key")` keys the content
 * secretstream, `KDF(DEK, "ecrin-meta-key")` the metadata AEAD.
 *
 * Content: the stream plaintext is the content and zero bytes up to
 * `padded_length = PADME(max(len, 256))`, cut into 64 KiB chunks (the last may be shorter),
 * each pushed with `AD = canonical("ecrin/chunk/v1", header bytes 0..58)`, the last with
 * TAG_FINAL. A ciphertext chunk is its plaintext length + 17 bytes.
 *
 * Metadata: `nonce(24) || AEAD(meta key, nonce, P, canonical("ecrin/metadata/v1", header
 * bytes 0..58))`, `P = content_length(u64be) || json_length(u32be) || JSON || zeros`,
 * `len(P) = PADME(max(12 + json_length, 256))`; JSON keys sorted, no whitespace.
 *
 * Memory: the encryptor and decryptor are push-style (`update` per piece, `finish` once)
 * and hold at most two chunks, whatever the content size; `encrypt`/`decrypt` drive them
 * from any iterable, async iterable or ReadableStream, and `transform()` gives a
 * TransformStream for `pipeThrough`.
 *
 * **Plaintext released before a late failure.** The decryptor releases each chunk's
 * plaintext once it authenticates under the DEK, but the signed content digest (which also
 * catches a stream re-encrypted by another holder of the scope key) and truncation can only
 * be checked after the last chunk. If decryption throws, the caller must discard everything
 * already received (write to a temporary place, commit only when the stream completed).
 */

import { aeadDecrypt, aeadEncrypt } from "./_aead.ts";
import { randomBytes } from "./_seams.ts";
import { freeState, sha256, sodium, type Sha256 } from "./_sodium.ts";
import { iterate, pushTransform, type ByteSource } from "./_streams.ts";
import {
  b64d, b64e, canonical, concat, deriveKey, digest, equalBytes, field, fromUtf8, parseUuid, pythonJson,
  readU32, readU64, u32, u64, utf8, type Uuid,
} from "./_wire.ts";
import { DecryptionError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { ScopeKey } from "./keyring.ts";
import { padme } from "./padding.ts";
import {
  FORMAT_VERSION, RecordHeader, dekCommitment, unwrapDek, type RecordHeaderJson,
} from "./record_header.ts";

export const CHUNK_SIZE = 64 * 1024;
export const CHUNK_OVERHEAD = 17;
export const MIN_PADDED_CONTENT = 256;
export const MIN_PADDED_METADATA = 256;
const TAG_MESSAGE = 0;
const TAG_FINAL = 3;
const CHUNK_LABEL = "ecrin/chunk/v1";
const META_LABEL = "ecrin/metadata/v1";
const STREAM_CONTEXT = "ecrin-stream-key";
const META_CONTEXT = "ecrin-meta-key";
const META_DIGEST_CONTEXT = "ecrin-meta-dgst";
const CONTENT_PREFIX = utf8("ecrin-content-v1");

export type Metadata = Record<string, unknown>;

/** Stream plaintext length (content + zero padding) for `contentLength` bytes. */
export function paddedContentLength(contentLength: number): number {
  return padme(Math.max(contentLength, MIN_PADDED_CONTENT));
}

/** Number of ciphertext chunks of a stream of `paddedLength` plaintext bytes. */
export function chunkCount(paddedLength: number): number {
  return Math.ceil(paddedLength / CHUNK_SIZE);
}

function contentDigest(): Sha256 {
  const h = sha256();
  h.update(CONTENT_PREFIX);
  return h;
}

export function encodeMetadata(contentLength: number, metadata: Metadata): Uint8Array {
  const body = utf8(pythonJson(metadata));
  const plain = concat(u64(contentLength), u32(body.length), body);
  const out = new Uint8Array(padme(Math.max(plain.length, MIN_PADDED_METADATA)));
  out.set(plain);
  return out;
}

function decodeMetadata(plain: Uint8Array): [number, Metadata] {
  if (plain.length < 12 || plain.length !== padme(Math.max(plain.length, MIN_PADDED_METADATA))) {
    throw new DecryptionError();
  }
  let contentLength: number, body: Uint8Array;
  try {
    contentLength = readU64(plain, 0);
    const bodyLength = readU32(plain, 8);
    if (12 + bodyLength > plain.length) throw new DecryptionError();
    body = plain.subarray(12, 12 + bodyLength);
    if (plain.subarray(12 + bodyLength).some((b) => b !== 0)) throw new DecryptionError();
    const metadata: unknown = JSON.parse(fromUtf8(body));
    if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
      throw new DecryptionError();
    }
    return [contentLength, metadata as Metadata];
  } catch {
    throw new DecryptionError();
  }
}

/** The push state `init_push` would compute for `header` (HChaCha20(key, header[0:16]),
 * counter 1, nonce header[16:24]): lets the header come from our own random seam. */
function streamState(streamKey: Uint8Array, streamHeader: Uint8Array): unknown {
  return sodium.crypto_secretstream_xchacha20poly1305_init_pull(streamHeader, streamKey);
}

export interface RecordEncryptorOptions {
  fileId: Uuid;
  recordId: Uuid;
  recordVersion: number;
  scopeKey: ScopeKey;
  author: IdentityKeys;
  metadata: Metadata;
}

/**
 * Encrypts one record version, streaming. Push plaintext with `update` (any piece sizes)
 * and call `finish` once; or use `encrypt(source)` / `transform()`. When finished,
 * `header` and `metadataCiphertext` are set.
 */
export class RecordEncryptor {
  readonly #metadata: Metadata;
  readonly #scopeKey: ScopeKey;
  readonly #author: IdentityKeys;
  #dek: Uint8Array;
  readonly #draft: RecordHeader;
  #state: unknown;
  readonly #ad: Uint8Array;
  readonly #digest: Sha256;
  #buffer: Uint8Array = new Uint8Array(CHUNK_SIZE);
  #fill = 0;
  #held: Uint8Array | null = null;
  /** A pushed piece's array, reused as the next fill buffer: no allocation per chunk. */
  #spare: Uint8Array | null = null;
  #length = 0;
  #done = false;
  #result: [RecordHeader, Uint8Array] | null = null;

  constructor(options: RecordEncryptorOptions) {
    const { fileId, recordId, recordVersion, scopeKey, author, metadata } = options;
    if (scopeKey.fileId !== parseUuid(fileId)) throw new RangeError("scope key belongs to another file");
    if (!Number.isInteger(recordVersion) || recordVersion < 1 || recordVersion > 0xffffffff) {
      throw new RangeError("recordVersion must be a positive u32");
    }
    this.#metadata = { ...metadata };
    pythonJson(this.#metadata); // fail early on non-JSON metadata
    this.#scopeKey = scopeKey;
    this.#author = author;
    this.#dek = randomBytes(32);
    const streamHeader = randomBytes(24);
    this.#draft = new RecordHeader({
      fileId, recordId, recordVersion, scope: scopeKey.scope, authorId: author.accountId,
      streamHeader, chunkSize: CHUNK_SIZE, paddedLength: 0,
      metadataDigest: new Uint8Array(32), contentDigest: new Uint8Array(32),
      dekCommitment: dekCommitment(this.#dek), authorSignature: new Uint8Array(64),
      keyVersion: scopeKey.version, wrapperId: author.accountId, wrapNonce: new Uint8Array(24),
      wrappedDek: new Uint8Array(48), wrapSignature: new Uint8Array(64), formatVersion: FORMAT_VERSION,
    });
    this.#state = streamState(deriveKey(this.#dek, STREAM_CONTEXT), streamHeader);
    this.#ad = canonical(CHUNK_LABEL, this.#draft.identityBytes());
    this.#digest = contentDigest();
  }

  #push(plain: Uint8Array, tag: number): Uint8Array {
    const chunk = sodium.crypto_secretstream_xchacha20poly1305_push(
      this.#state as never, plain, this.#ad, tag);
    this.#digest.update(chunk);
    return chunk;
  }

  /** Take a piece of plaintext; returns the ciphertext chunks that became ready. */
  update(piece: Uint8Array): Uint8Array[] {
    if (this.#done) throw new Error("a RecordEncryptor encrypts exactly one stream");
    const out: Uint8Array[] = [];
    this.#length += piece.length;
    let offset = 0;
    while (offset < piece.length) {
      if (this.#fill === 0 && piece.length - offset > CHUNK_SIZE) {
        // A full piece with more bytes after it cannot be the last: push it in place,
        // without copying it (large reads, e.g. 1 MiB pieces).
        this.#pushHeld(out);
        out.push(this.#push(piece.subarray(offset, offset + CHUNK_SIZE), TAG_MESSAGE));
        offset += CHUNK_SIZE;
        continue;
      }
      const take = Math.min(CHUNK_SIZE - this.#fill, piece.length - offset);
      this.#buffer.set(piece.subarray(offset, offset + take), this.#fill);
      this.#fill += take;
      offset += take;
      if (this.#fill === CHUNK_SIZE) {
        // The latest full piece is held back: only the next one tells it is not the last.
        this.#pushHeld(out);
        this.#held = this.#buffer;
        this.#buffer = this.#spare ?? new Uint8Array(CHUNK_SIZE);
        this.#spare = null;
        this.#fill = 0;
      }
    }
    return out;
  }

  /** Push the held piece (it is not the last); libsodium copied it, so its array is reused. */
  #pushHeld(out: Uint8Array[]): void {
    if (this.#held === null) return;
    out.push(this.#push(this.#held, TAG_MESSAGE));
    this.#spare = this.#held;
    this.#held = null;
  }

  /** End of plaintext: returns the last chunks (padding included) and seals the header. */
  finish(): Uint8Array[] {
    if (this.#done) throw new Error("a RecordEncryptor encrypts exactly one stream");
    this.#done = true;
    const out: Uint8Array[] = [];
    let held = this.#held ?? new Uint8Array(0);
    if (this.#fill > 0) {
      if (this.#held !== null) out.push(this.#push(this.#held, TAG_MESSAGE));
      held = this.#buffer.subarray(0, this.#fill);
    }
    const length = this.#length;
    const padded = paddedContentLength(length);
    let remaining = padded - (length - held.length);
    while (remaining > 0) {
      const size = Math.min(CHUNK_SIZE, remaining);
      let piece: Uint8Array;
      if (held.length >= size) {
        piece = held.subarray(0, size);
      } else {
        piece = new Uint8Array(size);
        piece.set(held);
      }
      held = held.subarray(Math.min(size, held.length));
      remaining -= size;
      out.push(this.#push(piece, remaining === 0 ? TAG_FINAL : TAG_MESSAGE));
    }
    this.#buffer = new Uint8Array(0);
    this.#held = null;
    this.#spare = null;
    freeState(this.#state);
    this.#state = null;
    this.#seal(length, padded);
    return out;
  }

  #seal(contentLength: number, paddedLength: number): void {
    const metaNonce = randomBytes(24);
    const metaKey = deriveKey(this.#dek, META_CONTEXT);
    const metaCt = concat(metaNonce, aeadEncrypt(encodeMetadata(contentLength, this.#metadata),
      canonical(META_LABEL, this.#draft.identityBytes()), metaNonce, metaKey));
    metaKey.fill(0);
    const core = this.#draft.with({
      paddedLength,
      metadataDigest: digest(metaCt, META_DIGEST_CONTEXT),
      contentDigest: this.#digest.digest(),
    });
    const signed = core.with({ authorSignature: this.#author.sign(core.authorMessage()) });
    const header = signed.withWrap(this.#scopeKey, this.#dek, this.#author);
    this.#result = [header, metaCt];
    this.#dek.fill(0);
    this.#dek = new Uint8Array(0);
  }

  /** Ciphertext chunks for `source`, streaming; `header` is set once it is exhausted. */
  async *encrypt(source: ByteSource): AsyncGenerator<Uint8Array> {
    for await (const piece of iterate(source)) yield* this.update(piece);
    yield* this.finish();
  }

  /** The synchronous form of {@link encrypt} for in-memory sources. */
  *encryptSync(source: Iterable<Uint8Array>): Generator<Uint8Array> {
    for (const piece of source) yield* this.update(piece);
    yield* this.finish();
  }

  /** A TransformStream from plaintext pieces to ciphertext chunks. */
  transform(): TransformStream<Uint8Array, Uint8Array> {
    return pushTransform((p) => this.update(p), () => this.finish());
  }

  get header(): RecordHeader {
    if (this.#result === null) throw new Error("the content stream has not been fully encrypted yet");
    return this.#result[0];
  }

  get metadataCiphertext(): Uint8Array {
    if (this.#result === null) throw new Error("the content stream has not been fully encrypted yet");
    return this.#result[1];
  }
}

export interface RecordDecryptorOptions {
  scopeKey: ScopeKey;
  author: PublicIdentity;
  wrapper?: PublicIdentity | null;
}

/**
 * Opens one record version. The constructor checks the author and wrap signatures (against
 * identities the caller has verified), unwraps the DEK, checks its commitment, the metadata
 * digest and AEAD. Then push the ciphertext chunks with `update` and call `finish`, or use
 * `decrypt(chunks)`, `transform()` (one chunk per piece) or `byteTransform()` (any piece
 * sizes, e.g. an HTTP body). Every failure throws {@link DecryptionError}; see the module
 * doc for what to do with plaintext released before a late failure.
 */
export class RecordDecryptor {
  readonly header: RecordHeader;
  readonly contentLength: number;
  readonly metadata: Metadata;
  #state: unknown = null;
  readonly #ad: Uint8Array;
  readonly #digest: Sha256;
  #streamKey: Uint8Array;
  #index = 0;
  #contentLeft: number;
  #failed = false;
  #done = false;
  #pending = new Uint8Array(0);

  constructor(header: RecordHeader | Uint8Array, metadataCiphertext: Uint8Array, options: RecordDecryptorOptions) {
    const h = header instanceof RecordHeader ? header : RecordHeader.fromBytes(header);
    h.verify(options.author, options.wrapper);
    if (h.chunkSize !== CHUNK_SIZE) throw new DecryptionError();
    const dek = unwrapDek(h, options.scopeKey);
    if (!equalBytes(digest(metadataCiphertext, META_DIGEST_CONTEXT), h.metadataDigest)
      || metadataCiphertext.length < 24) {
      throw new DecryptionError();
    }
    const plain = aeadDecrypt(metadataCiphertext.subarray(24), canonical(META_LABEL, h.identityBytes()),
      metadataCiphertext.subarray(0, 24), deriveKey(dek, META_CONTEXT));
    [this.contentLength, this.metadata] = decodeMetadata(plain);
    if (paddedContentLength(this.contentLength) !== h.paddedLength) throw new DecryptionError();
    this.header = h;
    this.#streamKey = deriveKey(dek, STREAM_CONTEXT);
    dek.fill(0);
    this.#contentLeft = this.contentLength;
    this.#ad = canonical(CHUNK_LABEL, h.identityBytes());
    this.#digest = contentDigest();
  }

  get chunkCount(): number {
    return chunkCount(this.header.paddedLength);
  }

  /** The ciphertext length of chunk `index` (0-based). */
  expectedChunkLength(index: number): number {
    return Math.min(CHUNK_SIZE, this.header.paddedLength - index * CHUNK_SIZE) + CHUNK_OVERHEAD;
  }

  #fail(): never {
    this.#failed = true;
    if (this.#state !== null) freeState(this.#state);
    this.#state = null;
    throw new DecryptionError();
  }

  /** Open the next ciphertext chunk; returns its content plaintext (possibly empty). */
  update(chunk: Uint8Array): Uint8Array {
    if (this.#failed || this.#done) this.#fail();
    if (this.#state === null) {
      this.#state = sodium.crypto_secretstream_xchacha20poly1305_init_pull(this.header.streamHeader, this.#streamKey);
    }
    const count = this.chunkCount;
    if (this.#index >= count) this.#fail(); // extended after the final chunk
    if (!(chunk instanceof Uint8Array) || chunk.length !== this.expectedChunkLength(this.#index)) this.#fail();
    let result: { message: Uint8Array; tag: number } | false;
    try {
      result = sodium.crypto_secretstream_xchacha20poly1305_pull(this.#state as never, chunk, this.#ad);
    } catch {
      this.#fail();
    }
    if (!result) this.#fail();
    this.#index += 1;
    if (result.tag !== (this.#index === count ? TAG_FINAL : TAG_MESSAGE)) this.#fail();
    this.#digest.update(chunk);
    const plain = result.message;
    const take = Math.min(plain.length, this.#contentLeft);
    for (let i = take; i < plain.length; i++) if (plain[i] !== 0) this.#fail(); // zero padding
    this.#contentLeft -= take;
    return take === plain.length ? plain : plain.subarray(0, take);
  }

  /** End of chunks: checks the chunk count and the signed content digest. */
  finish(): void {
    if (this.#failed || this.#done) this.#fail();
    if (this.#pending.length !== 0) this.#fail();
    if (this.#index !== this.chunkCount || !equalBytes(this.#digest.digest(), this.header.contentDigest)) {
      this.#fail();
    }
    this.#done = true;
    if (this.#state !== null) freeState(this.#state);
    this.#state = null;
    this.#streamKey.fill(0);
  }

  /** Feed arbitrary byte pieces (an HTTP body); returns plaintext of completed chunks. */
  updateBytes(piece: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let data = this.#pending.length ? concat(this.#pending, piece) : piece;
    while (this.#index < this.chunkCount) {
      const need = this.expectedChunkLength(this.#index);
      if (data.length < need) break;
      const plain = this.update(data.subarray(0, need));
      if (plain.length) out.push(plain);
      data = data.subarray(need);
    }
    if (this.#index >= this.chunkCount && data.length) this.#fail();
    this.#pending = data.length ? Uint8Array.from(data) : new Uint8Array(0);
    return out;
  }

  /** Content plaintext, chunk by chunk; completes only if the whole stream verifies. */
  async *decrypt(chunks: ByteSource): AsyncGenerator<Uint8Array> {
    for await (const chunk of iterate(chunks)) {
      const plain = this.update(chunk);
      if (plain.length) yield plain;
    }
    this.finish();
  }

  *decryptSync(chunks: Iterable<Uint8Array>): Generator<Uint8Array> {
    for (const chunk of chunks) {
      const plain = this.update(chunk);
      if (plain.length) yield plain;
    }
    this.finish();
  }

  /** A TransformStream from ciphertext chunks (one per piece) to plaintext. */
  transform(): TransformStream<Uint8Array, Uint8Array> {
    return pushTransform((c) => {
      const p = this.update(c);
      return p.length ? [p] : [];
    }, () => {
      this.finish();
      return [];
    });
  }

  /** A TransformStream from the concatenated ciphertext in any piece sizes to plaintext. */
  byteTransform(): TransformStream<Uint8Array, Uint8Array> {
    return pushTransform((p) => this.updateBytes(p), () => {
      this.finish();
      return [];
    });
  }
}

export interface EncryptedRecordJson extends RecordHeaderJson {
  metadata: string;
  chunks: string[];
}

/** What a record version uploads: header, metadata ciphertext, content chunks. */
export class EncryptedRecord {
  readonly header: RecordHeader;
  readonly metadataCiphertext: Uint8Array;
  readonly chunks: readonly Uint8Array[];

  constructor(header: RecordHeader, metadataCiphertext: Uint8Array, chunks: readonly Uint8Array[]) {
    this.header = header;
    this.metadataCiphertext = metadataCiphertext;
    this.chunks = chunks;
    Object.freeze(this);
  }

  toJSON(): EncryptedRecordJson {
    return { ...this.header.toJSON(), metadata: b64e(this.metadataCiphertext), chunks: this.chunks.map(b64e) };
  }

  static fromJSON(obj: unknown): EncryptedRecord {
    try {
      const chunks = field(obj, "chunks");
      if (!Array.isArray(chunks)) throw new DecryptionError();
      return new EncryptedRecord(RecordHeader.fromJSON(obj),
        b64d(field(obj, "metadata"), { what: "metadata" }),
        chunks.map((c) => b64d(c, { what: "chunk" })));
    } catch {
      throw new DecryptionError();
    }
  }
}

/** A decrypted record version. */
export interface OpenedRecord {
  header: RecordHeader;
  metadata: Metadata;
  content: Uint8Array;
}

/** One-shot encryption for records that fit in memory. */
export function encryptRecord(content: Uint8Array, metadata: Metadata,
  options: Omit<RecordEncryptorOptions, "metadata">): EncryptedRecord {
  const enc = new RecordEncryptor({ ...options, metadata });
  const chunks = [...enc.encryptSync([content])];
  return new EncryptedRecord(enc.header, enc.metadataCiphertext, chunks);
}

/** One-shot verification and decryption; throws {@link DecryptionError}. */
export function openRecord(record: EncryptedRecord, options: RecordDecryptorOptions): OpenedRecord {
  const dec = new RecordDecryptor(record.header, record.metadataCiphertext, options);
  const content = concat(...dec.decryptSync(record.chunks));
  return { header: record.header, metadata: dec.metadata, content };
}
