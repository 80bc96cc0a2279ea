/**
 * Wrapping identity private keys under the KEK or the recovery key, and account setup
 * (mirrors `ecrin_e2ee.account`).
 *
 *     key   = KEK (purpose "passphrase") | KDF(recovery_key, "ecrin-rk-wrap") (purpose "recovery")
 *     nonce = 24 random bytes
 *     AD    = canonical("ecrin/identity-wrap/v1", account_id(16), purpose(ascii))
 */

import { aeadDecrypt, aeadEncrypt } from "./_aead.ts";
import { randomBytes } from "./_seams.ts";
import { ascii, b64d, b64e, canonical, deriveKey, field, parseUuid, uuidBytes, type Uuid } from "./_wire.ts";
import { DecryptionError, FormatError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { KdfParams, KeyEncryptionKey, deriveAccountKeys, newSalt, type AccountKeys } from "./kdf.ts";
import { RecoveryKey } from "./recovery.ts";

export type Purpose = "passphrase" | "recovery";
const LABEL = "ecrin/identity-wrap/v1";
const RK_CONTEXT = "ecrin-rk-wrap";

function wrapping(key: KeyEncryptionKey | RecoveryKey): [Purpose, Uint8Array] {
  if (key instanceof KeyEncryptionKey) return ["passphrase", key.toBytes()];
  if (key instanceof RecoveryKey) return ["recovery", deriveKey(key.toBytes(), RK_CONTEXT)];
  throw new TypeError("wrapping key must be a KeyEncryptionKey or a RecoveryKey");
}

function ad(accountId: Uuid, purpose: string): Uint8Array {
  return canonical(LABEL, uuidBytes(accountId), ascii(purpose));
}

export interface WrappedIdentityJson {
  version: number;
  account_id: string;
  purpose: Purpose;
  nonce: string;
  ciphertext: string;
}

/** Identity private keys encrypted for storage in the kms. */
export class WrappedIdentity {
  static readonly VERSION = 1;
  static readonly NONCE_SIZE = 24;
  static readonly CIPHERTEXT_SIZE = IdentityKeys.SIZE + 16;

  readonly accountId: Uuid;
  readonly purpose: Purpose;
  readonly nonce: Uint8Array;
  readonly ciphertext: Uint8Array;
  readonly version: number;

  constructor(accountId: Uuid, purpose: Purpose, nonce: Uint8Array, ciphertext: Uint8Array, version = 1) {
    if (purpose !== "passphrase" && purpose !== "recovery") throw new FormatError("unknown wrap purpose");
    if (version !== WrappedIdentity.VERSION) throw new FormatError("unsupported wrap version");
    if (nonce.length !== WrappedIdentity.NONCE_SIZE || ciphertext.length !== WrappedIdentity.CIPHERTEXT_SIZE) {
      throw new FormatError("wrapped identity has the wrong size");
    }
    this.accountId = parseUuid(accountId);
    this.purpose = purpose;
    this.nonce = Uint8Array.from(nonce);
    this.ciphertext = Uint8Array.from(ciphertext);
    this.version = version;
    Object.freeze(this);
  }

  toJSON(): WrappedIdentityJson {
    return {
      version: this.version,
      account_id: this.accountId,
      purpose: this.purpose,
      nonce: b64e(this.nonce),
      ciphertext: b64e(this.ciphertext),
    };
  }

  static fromJSON(obj: unknown): WrappedIdentity {
    return new WrappedIdentity(
      parseUuid(field(obj, "account_id")),
      field(obj, "purpose") as Purpose,
      b64d(field(obj, "nonce"), { what: "nonce" }),
      b64d(field(obj, "ciphertext"), { what: "ciphertext" }),
      field(obj, "version") as number,
    );
  }
}

/** Encrypt the identity private keys under the KEK or the recovery key. */
export function wrapIdentity(keys: IdentityKeys, wrappingKey: KeyEncryptionKey | RecoveryKey): WrappedIdentity {
  const [purpose, key] = wrapping(wrappingKey);
  const nonce = randomBytes(WrappedIdentity.NONCE_SIZE);
  const ct = aeadEncrypt(keys.toBytes(), ad(keys.accountId, purpose), nonce, key);
  return new WrappedIdentity(keys.accountId, purpose, nonce, ct);
}

/** Decrypt; throws {@link DecryptionError} on a wrong key or any tampering. */
export function unwrapIdentity(wrapped: WrappedIdentity, wrappingKey: KeyEncryptionKey | RecoveryKey): IdentityKeys {
  const [purpose, key] = wrapping(wrappingKey);
  if (purpose !== wrapped.purpose) throw new DecryptionError();
  const plain = aeadDecrypt(wrapped.ciphertext, ad(wrapped.accountId, purpose), wrapped.nonce, key);
  try {
    return IdentityKeys.fromBytes(wrapped.accountId, plain);
  } catch {
    throw new DecryptionError();
  } finally {
    plain.fill(0);
  }
}

/**
 * Everything a new account produces on the device. Upload `salt`, `params`,
 * `loginPublicKey` (gateway); `publicIdentity`, `wrappedByPassphrase`, `wrappedByRecovery`
 * (kms). Show `recoveryKey` once. Keep `identityKeys` in memory only.
 */
export interface AccountSetup {
  accountId: Uuid;
  salt: Uint8Array;
  params: KdfParams;
  loginPublicKey: Uint8Array;
  identityKeys: IdentityKeys;
  publicIdentity: PublicIdentity;
  wrappedByPassphrase: WrappedIdentity;
  wrappedByRecovery: WrappedIdentity;
  recoveryKey: RecoveryKey;
}

/** The account setup from already-derived account keys (the Argon2id may run off-thread). */
export function createAccountWithKeys(accountId: Uuid, salt: Uint8Array, params: KdfParams,
  accountKeys: AccountKeys): AccountSetup {
  const identityKeys = IdentityKeys.generate(accountId);
  const recoveryKey = RecoveryKey.generate();
  return {
    accountId: parseUuid(accountId),
    salt,
    params,
    loginPublicKey: accountKeys.loginPublicKey,
    identityKeys,
    publicIdentity: identityKeys.publicIdentity(),
    wrappedByPassphrase: wrapIdentity(identityKeys, accountKeys.kek),
    wrappedByRecovery: wrapIdentity(identityKeys, recoveryKey),
    recoveryKey,
  };
}

/** Create salt, keys and wraps for a new account (slow and blocking: runs Argon2id once). */
export function createAccount(accountId: Uuid, passphrase: string | Uint8Array, params?: KdfParams): AccountSetup {
  const p = params ?? KdfParams.moderate();
  const salt = newSalt();
  return createAccountWithKeys(accountId, salt, p, deriveAccountKeys(passphrase, salt, p));
}
