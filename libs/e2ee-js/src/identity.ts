/**
 * Identity keys (X25519 for encryption, Ed25519 for signing) and public identities
 * (mirrors `ecrin_e2ee.identity`).
 *
 * A {@link PublicIdentity} is self-signed: the Ed25519 key signs
 * `canonical("ecrin/identity/v1", account_id(16), enc_public(32), sign_public(32))`. Its
 * fingerprint is `BLAKE2b-256(person="ecrin-fingerprnt")` of the same bytes, and a safety
 * number for two identities is 60 digits both people can read aloud.
 */

import { randomBytes } from "./_seams.ts";
import { sodium } from "./_sodium.ts";
import {
  b64d, b64e, canonical, concat, digest, equalBytes, field, fromHex, parseUuid, toHex,
  uuidBytes, type Uuid,
} from "./_wire.ts";
import { FormatError, IdentityMismatchError } from "./errors.ts";
import { SigningKey, verifySignature } from "./kdf.ts";

const SELF_SIG_LABEL = "ecrin/identity/v1";
const FINGERPRINT_CONTEXT = "ecrin-fingerprnt";
const SAFETY_CONTEXT = "ecrin-safety-num";

function identityBytes(accountId: Uuid, encPublic: Uint8Array, signPublic: Uint8Array): Uint8Array {
  return canonical(SELF_SIG_LABEL, uuidBytes(accountId), encPublic, signPublic);
}

export interface PublicIdentityJson {
  account_id: string;
  enc_public: string;
  sign_public: string;
  self_signature: string;
}

/** An account's public keys with their self-signature. Construction verifies it. */
export class PublicIdentity {
  static readonly KEY_SIZE = 32;
  static readonly SIGNATURE_SIZE = 64;
  static readonly FINGERPRINT_SIZE = 32;

  readonly accountId: Uuid;
  readonly encPublic: Uint8Array;
  readonly signPublic: Uint8Array;
  readonly selfSignature: Uint8Array;

  constructor(accountId: Uuid, encPublic: Uint8Array, signPublic: Uint8Array, selfSignature: Uint8Array) {
    if (encPublic.length !== 32 || signPublic.length !== 32) throw new FormatError("public keys must be 32 bytes");
    if (selfSignature.length !== 64) throw new FormatError("signature must be 64 bytes");
    this.accountId = parseUuid(accountId);
    this.encPublic = Uint8Array.from(encPublic);
    this.signPublic = Uint8Array.from(signPublic);
    this.selfSignature = Uint8Array.from(selfSignature);
    this.verify();
    Object.freeze(this);
  }

  /** Check the self-signature; throws {@link IdentityMismatchError}. */
  verify(): void {
    if (!verifySignature(this.signPublic, identityBytes(this.accountId, this.encPublic, this.signPublic),
      this.selfSignature)) {
      throw new IdentityMismatchError("identity self-signature does not verify");
    }
  }

  /** 32-byte fingerprint over the account id and both public keys. */
  fingerprint(): Uint8Array {
    return digest(identityBytes(this.accountId, this.encPublic, this.signPublic), FINGERPRINT_CONTEXT);
  }

  /** The fingerprint as 64 lowercase hex digits in groups of 4 (for display). */
  fingerprintHex(): string {
    return toHex(this.fingerprint()).match(/.{4}/g)!.join(" ");
  }

  /** Compare against a pinned fingerprint (bytes or hex, spaces allowed). */
  verifyFingerprint(pinned: Uint8Array | string): void {
    let bytes: Uint8Array;
    if (typeof pinned === "string") {
      try {
        bytes = fromHex(pinned.replace(/\s+/g, ""));
      } catch {
        throw new IdentityMismatchError("pinned fingerprint is not hex");
      }
    } else {
      bytes = pinned;
    }
    if (!equalBytes(this.fingerprint(), bytes)) {
      throw new IdentityMismatchError("identity does not match the pinned fingerprint");
    }
  }

  private safetyDigits(): string {
    const raw = digest(this.fingerprint(), SAFETY_CONTEXT, 30);
    let out = "";
    for (let i = 0; i < 30; i += 5) {
      let n = 0;
      for (const b of raw.subarray(i, i + 5)) n = n * 256 + b;
      out += String(n % 100000).padStart(5, "0");
    }
    return out;
  }

  /** 60 digits in 12 groups of 5, identical on both sides (order-independent). */
  safetyNumber(other: PublicIdentity): string {
    const halves = [this.safetyDigits(), other.safetyDigits()].sort();
    return halves.join("").match(/.{5}/g)!.join(" ");
  }

  /** Same account and same keys (the signature is deterministic Ed25519). */
  equals(other: PublicIdentity): boolean {
    return this.accountId === other.accountId && equalBytes(this.encPublic, other.encPublic)
      && equalBytes(this.signPublic, other.signPublic) && equalBytes(this.selfSignature, other.selfSignature);
  }

  toJSON(): PublicIdentityJson {
    return {
      account_id: this.accountId,
      enc_public: b64e(this.encPublic),
      sign_public: b64e(this.signPublic),
      self_signature: b64e(this.selfSignature),
    };
  }

  /** Parse and verify; throws {@link FormatError} or {@link IdentityMismatchError}. */
  static fromJSON(obj: unknown): PublicIdentity {
    return new PublicIdentity(
      parseUuid(field(obj, "account_id")),
      b64d(field(obj, "enc_public"), { size: 32, what: "enc_public" }),
      b64d(field(obj, "sign_public"), { size: 32, what: "sign_public" }),
      b64d(field(obj, "self_signature"), { size: 64, what: "self_signature" }),
    );
  }
}

/** An account's private identity keys; `toBytes()` is the 64-byte wrapped plaintext. */
export class IdentityKeys {
  static readonly SIZE = 64;
  readonly accountId: Uuid;
  readonly signingKey: SigningKey;
  readonly #encryptionKey: Uint8Array;
  readonly encPublic: Uint8Array;

  constructor(accountId: Uuid, encryptionKey: Uint8Array, signingKey: SigningKey) {
    if (encryptionKey.length !== 32) throw new RangeError("X25519 key must be 32 bytes");
    this.accountId = parseUuid(accountId);
    this.#encryptionKey = Uint8Array.from(encryptionKey);
    this.signingKey = signingKey;
    this.encPublic = sodium.crypto_scalarmult_base(this.#encryptionKey);
  }

  /** Fresh random X25519 and Ed25519 keys (32 random bytes each). */
  static generate(accountId: Uuid): IdentityKeys {
    const enc = randomBytes(32);
    const sign = randomBytes(32);
    return new IdentityKeys(accountId, enc, new SigningKey(sign));
  }

  /** From `x25519_private(32) || ed25519_seed(32)`. */
  static fromBytes(accountId: Uuid, data: Uint8Array): IdentityKeys {
    if (data.length !== IdentityKeys.SIZE) throw new RangeError("identity keys must be 64 bytes");
    return new IdentityKeys(accountId, data.subarray(0, 32), new SigningKey(data.subarray(32)));
  }

  toBytes(): Uint8Array {
    return concat(this.#encryptionKey, this.signingKey.toBytes());
  }

  /** The X25519 private key (for unsealing). Never log it. */
  encryptionKeyBytes(): Uint8Array {
    return Uint8Array.from(this.#encryptionKey);
  }

  /** The self-signed public identity to publish in the kms directory. */
  publicIdentity(): PublicIdentity {
    const signPublic = this.signingKey.publicKey;
    const signature = this.signingKey.sign(identityBytes(this.accountId, this.encPublic, signPublic));
    return new PublicIdentity(this.accountId, this.encPublic, signPublic, signature);
  }

  /** Detached Ed25519 signature. */
  sign(message: Uint8Array): Uint8Array {
    return this.signingKey.sign(message);
  }

  toString(): string {
    return `IdentityKeys(account_id=${this.accountId}, <secret>)`;
  }

  toJSON(): string {
    return this.toString();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}
