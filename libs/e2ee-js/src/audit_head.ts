/**
 * Signed heads of the services' audit chains (mirrors `ecrin_e2ee.audit_head`,
 * `docs/protocol.md` §16). The signature covers
 * `canonical("ecrin/audit-head/v1", service, chain, u64 seq, hash (32), u64 time)`.
 */

import { randomBytes, now } from "./_seams.ts";
import { SecretKey } from "./_secret.ts";
import { b64d, b64e, canonical, field, fromHex, u64, utf8 } from "./_wire.ts";
import { DecryptionError, FormatError } from "./errors.ts";
import { SigningKey, verifySignature } from "./kdf.ts";

const LABEL = "ecrin/audit-head/v1";
export const GENESIS = "0".repeat(64);

function name(value: unknown, what: string): string {
  if (typeof value !== "string" || utf8(value).length < 1 || utf8(value).length > 255) {
    throw new FormatError(`${what}: expected a string of 1 to 255 bytes`);
  }
  return value;
}

function timeText(value: Date): string {
  return value.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface AuditHeadJson {
  service: string;
  chain: string;
  seq: number;
  hash: string;
  time: string;
}

/** The last event of a chain as a service served it. Construction checks the shape. */
export class AuditHead {
  static readonly GENESIS = GENESIS;
  readonly service: string;
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
  readonly time: Date;

  constructor(service: string, chain: string, seq: number, hash: string, time: Date) {
    this.service = name(service, "service");
    this.chain = name(chain, "chain");
    // Python allows up to 2^63 - 1; a JSON number is exact only up to 2^53 - 1 here.
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0) {
      throw new FormatError("seq: expected an integer from 0");
    }
    if (typeof hash !== "string" || !/^[0-9a-f]{64}$/.test(hash)) {
      throw new FormatError("hash: expected 64 lowercase hex digits");
    }
    if (!(time instanceof Date) || !Number.isFinite(time.getTime()) || time.getTime() % 1000 !== 0
      || time.getTime() < 0) {
      throw new FormatError("time: expected a time in whole seconds");
    }
    if (seq === 0 && hash !== GENESIS) throw new FormatError("hash: the head of an empty chain is 64 zeros");
    this.seq = seq;
    this.hash = hash;
    this.time = time;
    Object.freeze(this);
  }

  signedBytes(): Uint8Array {
    return canonical(LABEL, utf8(this.service), utf8(this.chain), u64(this.seq), fromHex(this.hash),
      u64(this.time.getTime() / 1000));
  }

  toJSON(): AuditHeadJson {
    return { service: this.service, chain: this.chain, seq: this.seq, hash: this.hash, time: timeText(this.time) };
  }

  static fromJSON(obj: unknown): AuditHead {
    const text = field(obj, "time");
    if (typeof text !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(text)) {
      throw new FormatError("time: expected YYYY-MM-DDTHH:MM:SSZ");
    }
    const time = new Date(text);
    if (!Number.isFinite(time.getTime()) || timeText(time) !== text) throw new FormatError("time: non-canonical");
    return new AuditHead(field(obj, "service") as string, field(obj, "chain") as string,
      field(obj, "seq") as number, field(obj, "hash") as string, time);
  }
}

export interface SignedAuditHeadJson {
  head: AuditHeadJson;
  signature: string;
}

/** A head and the service's Ed25519 signature over its signed bytes. */
export class SignedAuditHead {
  static readonly SIGNATURE_SIZE = 64;
  readonly head: AuditHead;
  readonly signature: Uint8Array;

  constructor(head: AuditHead, signature: Uint8Array) {
    if (!(signature instanceof Uint8Array) || signature.length !== 64) throw new FormatError("signature must be 64 bytes");
    this.head = head;
    this.signature = signature;
    Object.freeze(this);
  }

  /** Throws {@link DecryptionError} unless `publicKey` signed this head. */
  verify(publicKey: Uint8Array): void {
    if (!verifySignature(publicKey, this.head.signedBytes(), this.signature)) throw new DecryptionError();
  }

  toJSON(): SignedAuditHeadJson {
    return { head: this.head.toJSON(), signature: b64e(this.signature) };
  }

  static fromJSON(obj: unknown): SignedAuditHead {
    return new SignedAuditHead(AuditHead.fromJSON(field(obj, "head")),
      b64d(field(obj, "signature"), { size: 64, what: "signature" }));
  }
}

/** A service's Ed25519 seed that signs its audit heads (services and vectors only). */
export class AuditSigningKey extends SecretKey {
  static override readonly SIZE = 32;

  static generate(): AuditSigningKey {
    return new AuditSigningKey(randomBytes(32));
  }

  get publicKey(): Uint8Array {
    return new SigningKey(this.toBytes()).publicKey;
  }

  /** Signs the head `(service, chain, seq, hash)` as of now. */
  sign(options: { service: string; chain: string; seq: number; hash: string }): SignedAuditHead {
    const t = now().getTime();
    const head = new AuditHead(options.service, options.chain, options.seq, options.hash,
      new Date(t - (((t % 1000) + 1000) % 1000)));
    return new SignedAuditHead(head, new SigningKey(this.toBytes()).sign(head.signedBytes()));
  }
}
