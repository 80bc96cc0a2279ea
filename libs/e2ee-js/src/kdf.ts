/**
 * Passphrase key derivation (mirrors `ecrin_e2ee.kdf`): Argon2id master secret, then
 * BLAKE2b keyed subkeys `KDF(master, "ecrin-login-key")` (the login Ed25519 seed) and
 * `KDF(master, "ecrin-kek")` (the KEK).
 *
 * {@link deriveAccountKeys} is deliberately slow (seconds and 256 MiB with MODERATE in
 * WebAssembly): in a browser call `deriveAccountKeysOffThread` (offthread.ts) instead, so
 * the main thread never blocks.
 */

import { randomBytes } from "./_seams.ts";
import { SecretKey } from "./_secret.ts";
import { sodium } from "./_sodium.ts";
import { deriveKey, field, utf8 } from "./_wire.ts";
import { FormatError } from "./errors.ts";

const LOGIN_CONTEXT = "ecrin-login-key";
const KEK_CONTEXT = "ecrin-kek";
export const SALT_SIZE = 16;
export const MASTER_SECRET_SIZE = 32;

// libsodium's argon2id bounds as PyNaCl reports them (the wasm build overflows the maxima).
export const OPSLIMIT_MIN = 1;
export const OPSLIMIT_MAX = 4294967295;
export const MEMLIMIT_MIN = 8192;
export const MEMLIMIT_MAX = 4398046510080;
export const OPSLIMIT_MODERATE = 3;
export const MEMLIMIT_MODERATE = 268435456;
export const OPSLIMIT_SENSITIVE = 4;
export const MEMLIMIT_SENSITIVE = 1073741824;

/** Argon2id cost parameters; stored with the account and sent to the client at login. */
export class KdfParams {
  static readonly ALG = "argon2id13";
  /** The most a client derives with, whatever a server hands it (SENSITIVE's memory, four
   * times its passes): more would let a hostile server hang the device. */
  static readonly CEILING_OPSLIMIT = 16;
  static readonly CEILING_MEMLIMIT = MEMLIMIT_SENSITIVE;

  readonly opslimit: number;
  readonly memlimit: number;
  readonly alg: string;

  constructor(opslimit: number, memlimit: number, alg: string = KdfParams.ALG) {
    if (alg !== KdfParams.ALG) throw new FormatError("unsupported KDF algorithm");
    if (!Number.isSafeInteger(opslimit) || !Number.isSafeInteger(memlimit)) {
      throw new FormatError("KDF limits must be integers");
    }
    if (opslimit < OPSLIMIT_MIN || opslimit > OPSLIMIT_MAX) throw new FormatError("opslimit out of range");
    if (memlimit < MEMLIMIT_MIN || memlimit > MEMLIMIT_MAX) throw new FormatError("memlimit out of range");
    this.opslimit = opslimit;
    this.memlimit = memlimit;
    this.alg = alg;
    Object.freeze(this);
  }

  /** libsodium MODERATE (opslimit 3, 256 MiB): the default for new accounts. */
  static moderate(): KdfParams {
    return new KdfParams(OPSLIMIT_MODERATE, MEMLIMIT_MODERATE);
  }

  static sensitive(): KdfParams {
    return new KdfParams(OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE);
  }

  /** The libsodium minimum (opslimit 1, 8 KiB). Tests and vectors only, never accounts. */
  static insecureForTests(): KdfParams {
    return new KdfParams(OPSLIMIT_MIN, MEMLIMIT_MIN);
  }

  /** True unless the parameters exceed what a client accepts to derive with. */
  withinCeiling(): boolean {
    return this.opslimit <= KdfParams.CEILING_OPSLIMIT && this.memlimit <= KdfParams.CEILING_MEMLIMIT;
  }

  toJSON(): { alg: string; opslimit: number; memlimit: number } {
    return { alg: this.alg, opslimit: this.opslimit, memlimit: this.memlimit };
  }

  static fromJSON(obj: unknown): KdfParams {
    const ops = field(obj, "opslimit"), mem = field(obj, "memlimit"), alg = field(obj, "alg");
    if (typeof ops !== "number" || typeof mem !== "number") throw new FormatError("KDF limits must be integers");
    if (typeof alg !== "string") throw new FormatError("unsupported KDF algorithm");
    return new KdfParams(ops, mem, alg);
  }
}

/** The KEK: wraps the identity private keys. Derived from the passphrase, stored nowhere. */
export class KeyEncryptionKey extends SecretKey {}

/** An Ed25519 signing key from its 32-byte seed. */
export class SigningKey extends SecretKey {
  readonly publicKey: Uint8Array;
  readonly #secret: Uint8Array;

  constructor(seed: Uint8Array) {
    super(seed);
    const pair = sodium.crypto_sign_seed_keypair(seed);
    this.publicKey = pair.publicKey;
    this.#secret = pair.privateKey;
  }

  static generate(): SigningKey {
    return new SigningKey(randomBytes(32));
  }

  /** Detached Ed25519 signature. */
  sign(message: Uint8Array): Uint8Array {
    return sodium.crypto_sign_detached(message, this.#secret);
  }
}

/** True when `signature` is `publicKey`'s Ed25519 signature of `message` (never throws). */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    return sodium.crypto_sign_verify_detached(signature, message, publicKey);
  } catch {
    return false;
  }
}

/** What a passphrase yields: the login signing key and the KEK. */
export class AccountKeys {
  readonly loginSigningKey: SigningKey;
  readonly kek: KeyEncryptionKey;

  constructor(loginSigningKey: SigningKey, kek: KeyEncryptionKey) {
    this.loginSigningKey = loginSigningKey;
    this.kek = kek;
  }

  /** The 32-byte Ed25519 public key the gateway stores to authenticate logins. */
  get loginPublicKey(): Uint8Array {
    return this.loginSigningKey.publicKey;
  }

  toString(): string {
    return "AccountKeys(<secret>)";
  }
}

/** A fresh random 16-byte Argon2id salt for a new account. */
export function newSalt(): Uint8Array {
  return randomBytes(SALT_SIZE);
}

/** A string passphrase is NFKC-normalised then UTF-8 encoded (as in Python). */
export function passphraseBytes(passphrase: string | Uint8Array): Uint8Array {
  return typeof passphrase === "string" ? utf8(passphrase.normalize("NFKC")) : Uint8Array.from(passphrase);
}

/** Argon2id(password, salt, params), 32 bytes (or `size`). Blocking and slow. */
export function argon2id(password: Uint8Array, salt: Uint8Array, params: KdfParams, size = 32): Uint8Array {
  if (salt.length !== SALT_SIZE) throw new RangeError(`salt must be ${SALT_SIZE} bytes`);
  return sodium.crypto_pwhash(size, password, salt, params.opslimit, params.memlimit,
    sodium.crypto_pwhash_ALG_ARGON2ID13);
}

/** The subkeys of a master secret (cheap; the Argon2id output may come from a worker). */
export function accountKeysFromMaster(master: Uint8Array): AccountKeys {
  if (master.length !== MASTER_SECRET_SIZE) throw new RangeError("master secret must be 32 bytes");
  return new AccountKeys(new SigningKey(deriveKey(master, LOGIN_CONTEXT)),
    new KeyEncryptionKey(deriveKey(master, KEK_CONTEXT)));
}

/** Argon2id(passphrase, salt, params) -> master secret -> login key and KEK. Blocking. */
export function deriveAccountKeys(passphrase: string | Uint8Array, salt: Uint8Array, params: KdfParams): AccountKeys {
  const master = argon2id(passphraseBytes(passphrase), salt, params, MASTER_SECRET_SIZE);
  try {
    return accountKeysFromMaster(master);
  } finally {
    master.fill(0);
  }
}
