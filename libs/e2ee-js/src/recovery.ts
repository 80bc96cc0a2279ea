/**
 * The recovery key (mirrors `ecrin_e2ee.recovery`): 32 random bytes the user keeps on
 * paper, printed as `ecrin-rk-` + 52 Crockford-base32 digits in 13 groups of 4, each group
 * ending in a Damm check character.
 */

import { randomBytes } from "./_seams.ts";
import { SecretKey } from "./_secret.ts";
import { deriveKey } from "./_wire.ts";
import { decodeGroups, encodeGroups } from "./codes.ts";
import { InvalidCode } from "./errors.ts";
import { SigningKey } from "./kdf.ts";

const LOGIN_CONTEXT = "ecrin-rk-login";

export class RecoveryKey extends SecretKey {
  static override readonly SIZE = 32;
  static readonly PREFIX = "ecrin-rk-";
  static readonly TEXT_DIGITS = 52;

  static generate(): RecoveryKey {
    return new RecoveryKey(randomBytes(RecoveryKey.SIZE));
  }

  /** The printable form, shown to the user exactly once. */
  toText(): string {
    return RecoveryKey.PREFIX + encodeGroups(this.toBytes(), RecoveryKey.TEXT_DIGITS);
  }

  /** Parse the printable form; throws {@link InvalidCode} on any typo. */
  static fromText(text: string): RecoveryKey {
    if (typeof text !== "string") throw new InvalidCode("recovery key must be text");
    const stripped = text.trim();
    if (!stripped.toLowerCase().startsWith(RecoveryKey.PREFIX)) {
      throw new InvalidCode(`recovery key must start with '${RecoveryKey.PREFIX}'`);
    }
    return new RecoveryKey(decodeGroups(stripped.slice(RecoveryKey.PREFIX.length),
      RecoveryKey.TEXT_DIGITS, RecoveryKey.SIZE));
  }

  /** The Ed25519 key proving possession of the recovery key to the gateway. */
  loginSigningKey(): SigningKey {
    return new SigningKey(deriveKey(this.toBytes(), LOGIN_CONTEXT));
  }

  get loginPublicKey(): Uint8Array {
    return this.loginSigningKey().publicKey;
  }
}
