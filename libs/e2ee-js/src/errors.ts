/**
 * The library's errors (mirrors `ecrin_e2ee.errors`).
 *
 * Every error extends {@link E2EEError}. No message ever carries key material, plaintext or
 * a value that was being checked: a {@link DecryptionError} always says "decryption failed",
 * whichever check failed, so an attacker who tampers with stored data learns nothing.
 */

export class E2EEError extends Error {
  override name = "E2EEError";
}

/** Something could not be opened: a ciphertext, a wrap, a signature, a binding. */
export class DecryptionError extends E2EEError {
  static readonly MESSAGE = "decryption failed";
  override name = "DecryptionError";
  constructor() {
    super(DecryptionError.MESSAGE);
  }
}

/** A public identity does not verify, or does not match the fingerprint pinned for it. */
export class IdentityMismatchError extends E2EEError {
  override name = "IdentityMismatchError";
}

/** A recovery key or invitation code is malformed or fails its checksum. */
export class InvalidCode extends E2EEError {
  override name = "InvalidCode";
}

/** A public (non-secret) object is structurally invalid: a bad JSON shape, length or range. */
export class FormatError extends E2EEError {
  override name = "FormatError";
}
