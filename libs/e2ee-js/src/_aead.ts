/** XChaCha20-Poly1305 (IETF) with one opaque failure, as every wrap in the protocol uses. */

import { sodium } from "./_sodium.ts";
import { DecryptionError } from "./errors.ts";

export const NONCE_SIZE = 24;
export const TAG_SIZE = 16;

export function aeadEncrypt(plain: Uint8Array, ad: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  return sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, ad, null, nonce, key);
}

/** Decrypt; any failure (wrong key, tampering, bad sizes) is a {@link DecryptionError}. */
export function aeadDecrypt(ciphertext: Uint8Array, ad: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  try {
    return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(null, ciphertext, ad, nonce, key);
  } catch {
    throw new DecryptionError();
  }
}
