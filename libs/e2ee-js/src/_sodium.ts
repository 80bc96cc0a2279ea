/**
 * The one libsodium instance (libsodium-wrappers-sumo), ready when this module has loaded.
 *
 * Top-level await: importing any module of the library guarantees libsodium is initialised,
 * so every primitive below is synchronous, as in PyNaCl. Two helpers reach the raw wasm
 * exports because the wrappers lack them: BLAKE2b with a key, a personalisation *and* a
 * message (`crypto_generichash_blake2b_salt_personal` in the wrappers hashes no message),
 * and an incremental SHA-256 that uses Node's hardware-accelerated hash when present.
 */

import sodium from "libsodium-wrappers-sumo";

await sodium.ready;

export { sodium };

interface RawSodium {
  HEAPU8: Uint8Array;
  _malloc(size: number): number;
  _free(ptr: number): void;
  _crypto_generichash_blake2b_salt_personal(
    out: number, outlen: number, input: number, inlenLo: number, inlenHi: number,
    key: number, keylen: number, salt: number, personal: number): number;
}

const raw = (sodium as unknown as { libsodium: RawSodium }).libsodium;

/** BLAKE2b(out=size, key, salt=0, personal=person padded to 16, msg). */
export function blake2b(message: Uint8Array, size: number, key: Uint8Array | null,
  person: Uint8Array): Uint8Array {
  if (person.length > 16) throw new RangeError("personalisation longer than 16 bytes");
  if (size < 1 || size > 64) throw new RangeError("BLAKE2b output size out of range");
  // libsodium's C function takes any key of 0..64 bytes (KEYBYTES_MIN is advice only);
  // PyNaCl, and the vector generator's short seeds, rely on that.
  if (key !== null && key.length > 64) {
    throw new RangeError("BLAKE2b key size out of range");
  }
  const keyLength = key?.length ?? 0;
  const total = size + message.length + keyLength + 16;
  const base = raw._malloc(total > 0 ? total : 1);
  try {
    const out = base, msg = base + size, k = msg + message.length, p = k + keyLength;
    let heap = raw.HEAPU8;
    heap.set(message, msg);
    if (key !== null) heap.set(key, k);
    heap.fill(0, p, p + 16);
    heap.set(person, p);
    const rc = raw._crypto_generichash_blake2b_salt_personal(
      out, size, msg, message.length, 0, key === null ? 0 : k, keyLength, 0, p);
    if (rc !== 0) throw new Error("BLAKE2b failed");
    heap = raw.HEAPU8;
    const result = heap.slice(out, out + size);
    heap.fill(0, base, base + total);
    return result;
  } finally {
    raw._free(base);
  }
}

/** An incremental SHA-256 (FIPS 180-4). */
export interface Sha256 {
  update(data: Uint8Array): void;
  digest(): Uint8Array;
}

interface NodeHash {
  update(data: Uint8Array): NodeHash;
  digest(): Uint8Array;
}
type NodeCrypto = { createHash(algorithm: string): NodeHash };

// process.getBuiltinModule is synchronous and absent in browsers: no import to bundle.
const nodeCrypto: NodeCrypto | undefined = (globalThis as {
  process?: { getBuiltinModule?: (id: string) => unknown };
}).process?.getBuiltinModule?.("node:crypto") as NodeCrypto | undefined;

/** SHA-256: Node's OpenSSL hash when running in Node (SHA-NI), libsodium's otherwise. */
export function sha256(): Sha256 {
  if (nodeCrypto !== undefined) {
    const h = nodeCrypto.createHash("sha256");
    return {
      update: (data) => { h.update(data); },
      digest: () => new Uint8Array(h.digest()),
    };
  }
  const state = sodium.crypto_hash_sha256_init();
  let done = false;
  return {
    update: (data) => { sodium.crypto_hash_sha256_update(state, data); },
    digest: () => {
      if (done) throw new Error("digest already taken");
      done = true;
      return sodium.crypto_hash_sha256_final(state);
    },
  };
}

/** Release a libsodium.js state (a secretstream or hash state the wrappers malloc'ed). */
export function freeState(state: unknown): void {
  if (typeof state === "number") raw._free(state);
}
