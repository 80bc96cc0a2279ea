/**
 * Secrets a device keeps for its own account only (mirrors `ecrin_e2ee.local_seal`): the
 * names it gave its contacts, sealed under a key derived from the account's identity keys,
 * never sent to a server.
 *
 * Key: `crypto_kdf_derive_from_key(32, subkeyId, "ecrinloc", ed25519_seed)`, one subkey id
 * per purpose. Sealed text: `ecrin-ls1.<b64url(nonce(24) || XChaCha20-Poly1305)>`, with
 * associated data `canonical("ecrin-ls1", account id, purpose)`. Every failure is the one
 * opaque {@link DecryptionError}.
 */

import { aeadDecrypt, aeadEncrypt, NONCE_SIZE, TAG_SIZE } from "./_aead.ts";
import { randomBytes } from "./_seams.ts";
import { sodium } from "./_sodium.ts";
import { b64d, b64e, canonical, utf8, uuidBytes } from "./_wire.ts";
import { DecryptionError } from "./errors.ts";
import type { IdentityKeys } from "./identity.ts";

const LABEL = "ecrin-ls1";
const KDF_CONTEXT = "ecrinloc";
/** purpose -> crypto_kdf subkey id. Never reuse an id for another purpose. */
/** `device-state`: the web app's pins, bindings and high-water marks (web/src/device-store.ts). */
export const LOCAL_PURPOSES: Readonly<Record<string, number>> = { contacts: 1, "device-state": 2 };

/** `crypto_kdf_derive_from_key` of the identity's Ed25519 seed for `purpose`. */
export function localKey(identity: IdentityKeys, purpose: string): Uint8Array {
  const subkeyId = LOCAL_PURPOSES[purpose];
  if (subkeyId === undefined) throw new RangeError(`unknown local purpose ${purpose}`);
  return sodium.crypto_kdf_derive_from_key(32, subkeyId, KDF_CONTEXT,
    identity.signingKey.toBytes());
}

function ad(identity: IdentityKeys, purpose: string): Uint8Array {
  return canonical(LABEL, uuidBytes(identity.accountId), utf8(purpose));
}

/** `plaintext` sealed for this account's own devices, for `purpose`. */
export function localSeal(identity: IdentityKeys, purpose: string, plaintext: Uint8Array): string {
  const nonce = randomBytes(NONCE_SIZE);
  const ciphertext = aeadEncrypt(plaintext, ad(identity, purpose), nonce, localKey(identity, purpose));
  const out = new Uint8Array(NONCE_SIZE + ciphertext.length);
  out.set(nonce);
  out.set(ciphertext, NONCE_SIZE);
  return `${LABEL}.${b64e(out)}`;
}

/** What {@link localSeal} sealed, or {@link DecryptionError}. */
export function localOpen(identity: IdentityKeys, purpose: string, sealed: string): Uint8Array {
  let raw: Uint8Array;
  try {
    const [label, body, ...rest] = sealed.split(".");
    if (label !== LABEL || body === undefined || rest.length) throw new DecryptionError();
    raw = b64d(body);
    if (raw.length < NONCE_SIZE + TAG_SIZE) throw new DecryptionError();
    return aeadDecrypt(raw.subarray(NONCE_SIZE), ad(identity, purpose), raw.subarray(0, NONCE_SIZE),
      localKey(identity, purpose));
  } catch {
    throw new DecryptionError();
  }
}
