/**
 * Invitations for people who have no account yet, binding both people to each other
 * (mirrors `ecrin_e2ee.invitation`, `docs/protocol.md` §7, format version 2).
 *
 * - `lookup_id = b64(BLAKE2b-128(key=code, person="ecrin-inv-lookup"))`;
 * - `K = Argon2id(code, salt, params)`; payload = `AEAD(K, nonce, P, canonical(
 *   "ecrin/invitation/v2", lookup_id, file_id))`, `P = count || bound keys (53 each) ||
 *   inviter account id (16) || inviter fingerprint (32)`;
 * - proof key `PK = KDF(K, "ecrin-inv-proof")`; proof = `BLAKE2b(out=32, key=PK,
 *   person="ecrin-inv-redeem", canonical("ecrin/invitation-redeem/v1", file_id,
 *   redeemer id, redeemer fingerprint))`;
 * - verifier = `AEAD(KDF(inviter Ed25519 seed, "ecrin-self-wrap"), nonce, PK,
 *   canonical("ecrin/inv-verifier/v1", lookup_id, file_id, inviter id))`.
 *
 * Creating and redeeming run Argon2id: in a browser use the off-thread variants
 * (offthread.ts), which take the Argon2id output computed in a worker.
 */

import { aeadDecrypt, aeadEncrypt } from "./_aead.ts";
import { blake2b } from "./_sodium.ts";
import { randomBytes } from "./_seams.ts";
import { SecretKey } from "./_secret.ts";
import {
  ascii, b64d, b64e, canonical, concat, deriveKey, equalBytes, field, parseUuid, utf8, uuidBytes,
  uuidFromBytes, type Uuid,
} from "./_wire.ts";
import { decodeGroups, encodeGroups } from "./codes.ts";
import { DecryptionError, FormatError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { KdfParams, SALT_SIZE, argon2id } from "./kdf.ts";
import { ScopeKey } from "./keyring.ts";

const LOOKUP_CONTEXT = "ecrin-inv-lookup";
const PROOF_CONTEXT = "ecrin-inv-proof";
const REDEEM_CONTEXT = "ecrin-inv-redeem";
const SELF_WRAP_CONTEXT = "ecrin-self-wrap";
const LABEL = "ecrin/invitation/v2";
const REDEEM_LABEL = "ecrin/invitation-redeem/v1";
const VERIFIER_LABEL = "ecrin/inv-verifier/v1";
export const PROOF_SIZE = 32;
const FINGERPRINT_SIZE = PublicIdentity.FINGERPRINT_SIZE;

/** A 15-byte (120-bit) one-time code; never sent to a server. */
export class InvitationCode extends SecretKey {
  static override readonly SIZE = 15;
  static readonly TEXT_DIGITS = 24;

  static generate(): InvitationCode {
    return new InvitationCode(randomBytes(InvitationCode.SIZE));
  }

  toText(): string {
    return encodeGroups(this.toBytes(), InvitationCode.TEXT_DIGITS);
  }

  /** Parse a typed or scanned code; throws InvalidCode on a typo. */
  static fromText(text: string): InvitationCode {
    return new InvitationCode(decodeGroups(text, InvitationCode.TEXT_DIGITS, InvitationCode.SIZE));
  }

  /** The server-side handle of the invitation (base64url of 16 bytes). */
  lookupId(): string {
    return b64e(deriveKey(this.toBytes(), LOOKUP_CONTEXT, 16));
  }
}

export interface InvitationPayloadJson {
  version: number;
  lookup_id: string;
  file_id: string;
  salt: string;
  kdf: { alg: string; opslimit: number; memlimit: number };
  nonce: string;
  ciphertext: string;
}

/** What the sharing service stores with a pending grant (opened with the code). */
export class InvitationPayload {
  static readonly VERSION = 2;
  readonly lookupId: string;
  readonly fileId: Uuid;
  readonly salt: Uint8Array;
  readonly params: KdfParams;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly version: number;

  constructor(lookupId: string, fileId: Uuid, salt: Uint8Array, params: KdfParams, nonce: Uint8Array,
    ciphertext: Uint8Array, version = 2) {
    if (version !== InvitationPayload.VERSION) {
      throw new FormatError("unsupported invitation version (made by an older client)");
    }
    if (salt.length !== SALT_SIZE || nonce.length !== 24) {
      throw new FormatError("invitation salt or nonce has the wrong size");
    }
    if (typeof lookupId !== "string") throw new FormatError("lookup_id must be a string");
    this.lookupId = lookupId;
    this.fileId = parseUuid(fileId);
    this.salt = salt;
    this.params = params;
    this.nonce = nonce;
    this.ciphertext = ciphertext;
    this.version = version;
    Object.freeze(this);
  }

  toJSON(): InvitationPayloadJson {
    return {
      version: this.version,
      lookup_id: this.lookupId,
      file_id: this.fileId,
      salt: b64e(this.salt),
      kdf: this.params.toJSON(),
      nonce: b64e(this.nonce),
      ciphertext: b64e(this.ciphertext),
    };
  }

  static fromJSON(obj: unknown): InvitationPayload {
    return new InvitationPayload(
      field(obj, "lookup_id") as string,
      parseUuid(field(obj, "file_id")),
      b64d(field(obj, "salt"), { what: "salt" }),
      KdfParams.fromJSON(field(obj, "kdf")),
      b64d(field(obj, "nonce"), { what: "nonce" }),
      b64d(field(obj, "ciphertext"), { what: "ciphertext" }),
      field(obj, "version") as number,
    );
  }

  ad(): Uint8Array {
    return canonical(LABEL, ascii(this.lookupId), uuidBytes(this.fileId));
  }
}

export interface InvitationVerifierJson {
  version: number;
  nonce: string;
  ciphertext: string;
}

/** The proof key wrapped for the inviter's own account (only its identity keys open it). */
export class InvitationVerifier {
  static readonly VERSION = 1;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly version: number;

  constructor(nonce: Uint8Array, ciphertext: Uint8Array, version = 1) {
    if (version !== InvitationVerifier.VERSION) throw new FormatError("unsupported invitation verifier version");
    if (nonce.length !== 24 || ciphertext.length !== PROOF_SIZE + 16) {
      throw new FormatError("invitation verifier has the wrong size");
    }
    this.nonce = nonce;
    this.ciphertext = ciphertext;
    this.version = version;
    Object.freeze(this);
  }

  toJSON(): InvitationVerifierJson {
    return { version: this.version, nonce: b64e(this.nonce), ciphertext: b64e(this.ciphertext) };
  }

  static fromJSON(obj: unknown): InvitationVerifier {
    return new InvitationVerifier(b64d(field(obj, "nonce"), { what: "nonce" }),
      b64d(field(obj, "ciphertext"), { what: "ciphertext" }), field(obj, "version") as number);
  }
}

/** The code to hand over (never uploaded), and the two objects to upload. */
export interface CreatedInvitation {
  code: InvitationCode;
  payload: InvitationPayload;
  verifier: InvitationVerifier;
}

/** What the code opened: the keys, who made the invitation, and the proof to send. */
export interface RedeemedInvitation {
  scopeKeys: ScopeKey[];
  inviterId: Uuid;
  inviterFingerprint: Uint8Array;
  proof: Uint8Array;
}

/** Argon2id of the code: the payload key. Slow; `offthread.ts` runs it in a worker. */
export function payloadKey(code: InvitationCode, salt: Uint8Array, params: KdfParams): Uint8Array {
  return argon2id(code.toBytes(), salt, params, 32);
}

function selfWrapKey(owner: IdentityKeys): Uint8Array {
  return deriveKey(owner.signingKey.toBytes(), SELF_WRAP_CONTEXT);
}

function verifierAd(lookupId: string, fileId: Uuid, inviterId: Uuid): Uint8Array {
  return canonical(VERIFIER_LABEL, ascii(lookupId), uuidBytes(fileId), uuidBytes(inviterId));
}

function mac(proofKey: Uint8Array, fileId: Uuid, redeemer: PublicIdentity): Uint8Array {
  const message = canonical(REDEEM_LABEL, uuidBytes(fileId), uuidBytes(redeemer.accountId), redeemer.fingerprint());
  return blake2b(message, PROOF_SIZE, proofKey, utf8(REDEEM_CONTEXT));
}

/** Draw the code, salt and nonce of a new invitation (the first half of creating one). */
export function draftInvitation(scopeKeys: readonly ScopeKey[], params?: KdfParams): {
  code: InvitationCode; salt: Uint8Array; params: KdfParams;
} {
  if (scopeKeys.length === 0 || scopeKeys.length > 255) {
    throw new RangeError("an invitation carries between 1 and 255 scope keys");
  }
  const fileId = scopeKeys[0]!.fileId;
  if (scopeKeys.some((k) => k.fileId !== fileId)) throw new RangeError("all scope keys of an invitation belong to one file");
  return { code: InvitationCode.generate(), salt: randomBytes(SALT_SIZE), params: params ?? KdfParams.moderate() };
}

/** Seal a drafted invitation with its Argon2id key `key` (the second half; fast). */
export function sealInvitation(scopeKeys: readonly ScopeKey[], inviter: IdentityKeys,
  draft: { code: InvitationCode; salt: Uint8Array; params: KdfParams }, key: Uint8Array): CreatedInvitation {
  const { code, salt, params } = draft;
  const fileId = scopeKeys[0]!.fileId;
  const nonce = randomBytes(24);
  const unsealed = new InvitationPayload(code.lookupId(), fileId, salt, params, nonce, new Uint8Array(0));
  const plain = concat(Uint8Array.of(scopeKeys.length), ...scopeKeys.map((k) => k.toBoundBytes()),
    uuidBytes(inviter.accountId), inviter.publicIdentity().fingerprint());
  const ciphertext = aeadEncrypt(plain, unsealed.ad(), nonce, key);
  plain.fill(0);
  const verifierNonce = randomBytes(24);
  const verifier = new InvitationVerifier(verifierNonce, aeadEncrypt(deriveKey(key, PROOF_CONTEXT),
    verifierAd(code.lookupId(), fileId, inviter.accountId), verifierNonce, selfWrapKey(inviter)));
  const payload = new InvitationPayload(code.lookupId(), fileId, salt, params, nonce, ciphertext);
  return { code, payload, verifier };
}

/**
 * Draw a code and wrap `scopeKeys` (all of one file) and the inviter's fingerprint under
 * Argon2id(code); wrap the proof key for the inviter's own account. Blocking (Argon2id).
 */
export function createInvitation(scopeKeys: readonly ScopeKey[], options: { inviter: IdentityKeys; params?: KdfParams }): CreatedInvitation {
  const draft = draftInvitation(scopeKeys, options.params);
  const key = payloadKey(draft.code, draft.salt, draft.params);
  try {
    return sealInvitation(scopeKeys, options.inviter, draft, key);
  } finally {
    key.fill(0);
  }
}

/** True when the payload may be opened at all: its lookup id and a KDF within the ceiling. */
export function redeemable(code: InvitationCode, payload: InvitationPayload): boolean {
  return payload.lookupId === code.lookupId() && payload.params.withinCeiling();
}

/** Open a payload with its Argon2id key (from {@link payloadKey}, maybe off-thread). */
export function openInvitation(code: InvitationCode, payload: InvitationPayload, redeemer: PublicIdentity,
  key: Uint8Array): RedeemedInvitation {
  if (!redeemable(code, payload)) throw new DecryptionError();
  const size = ScopeKey.BOUND_SIZE;
  const plain = aeadDecrypt(payload.ciphertext, payload.ad(), payload.nonce, key);
  let keys: ScopeKey[], inviterId: Uuid, fingerprint: Uint8Array;
  try {
    const count = plain[0]!;
    if (count === 0 || plain.length !== 1 + count * size + 16 + FINGERPRINT_SIZE) throw new DecryptionError();
    keys = [];
    for (let i = 0; i < count; i++) keys.push(ScopeKey.fromBoundBytes(plain.subarray(1 + i * size, 1 + (i + 1) * size)));
    const tail = plain.subarray(1 + count * size);
    inviterId = uuidFromBytes(tail.subarray(0, 16));
    fingerprint = tail.slice(16);
  } catch {
    throw new DecryptionError();
  } finally {
    plain.fill(0);
  }
  if (keys.some((k) => k.fileId !== payload.fileId)) throw new DecryptionError();
  const proof = mac(deriveKey(key, PROOF_CONTEXT), payload.fileId, redeemer);
  return { scopeKeys: keys, inviterId, inviterFingerprint: fingerprint, proof };
}

/**
 * Open the payload with the code and prove that `redeemer` holds it; throws
 * {@link DecryptionError}. Blocking (Argon2id). The invitee then trusts the inviter only
 * with the fingerprint returned here, seals the keys to itself and sends the proof.
 */
export function redeemInvitation(code: InvitationCode, payload: InvitationPayload, redeemer: PublicIdentity): RedeemedInvitation {
  if (!redeemable(code, payload)) throw new DecryptionError();
  let key: Uint8Array;
  try {
    key = payloadKey(code, payload.salt, payload.params);
  } catch {
    throw new DecryptionError();
  }
  try {
    return openInvitation(code, payload, redeemer, key);
  } finally {
    key.fill(0);
  }
}

/** The 32-byte proof alone. */
export function redemptionProof(code: InvitationCode, payload: InvitationPayload, redeemer: PublicIdentity): Uint8Array {
  return redeemInvitation(code, payload, redeemer).proof;
}

/**
 * On any of the inviter's devices: does `proof` show that `redeemer` holds the code?
 * Throws {@link DecryptionError} otherwise (a swapped verifier, another identity, a forgery).
 */
export function checkRedemption(verifier: InvitationVerifier, inviter: IdentityKeys, options: {
  lookupId: string; fileId: Uuid; redeemer: PublicIdentity; proof: Uint8Array;
}): void {
  let proofKey: Uint8Array;
  try {
    proofKey = aeadDecrypt(verifier.ciphertext, verifierAd(options.lookupId, parseUuid(options.fileId), inviter.accountId),
      verifier.nonce, selfWrapKey(inviter));
  } catch {
    throw new DecryptionError();
  }
  const expected = mac(proofKey, parseUuid(options.fileId), options.redeemer);
  if (options.proof.length !== PROOF_SIZE || !equalBytes(expected, options.proof)) throw new DecryptionError();
}

