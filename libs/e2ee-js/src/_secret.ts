/** A base class for fixed-size secret keys that never print their bytes. */

import { randomBytes } from "./_seams.ts";
import { equalBytes } from "./_wire.ts";

export abstract class SecretKey {
  static readonly SIZE: number = 32;
  readonly #key: Uint8Array;

  constructor(key: Uint8Array) {
    const size = (this.constructor as typeof SecretKey).SIZE;
    if (!(key instanceof Uint8Array) || key.length !== size) {
      throw new RangeError(`${this.constructor.name} must be ${size} bytes`);
    }
    this.#key = Uint8Array.from(key);
  }

  /** The raw key. Handle with care: never log or persist it unwrapped. */
  toBytes(): Uint8Array {
    return Uint8Array.from(this.#key);
  }

  /** Constant-time comparison with a key of the same class. */
  equals(other: SecretKey): boolean {
    return other.constructor === this.constructor && equalBytes(this.#key, other.#key);
  }

  toString(): string {
    return `${this.constructor.name}(<secret>)`;
  }

  toJSON(): string {
    return this.toString();
  }

  /** Node's util.inspect: never the bytes. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/** Fresh random bytes of the class's size, through the seam. */
export function randomKeyBytes(size: number): Uint8Array {
  return randomBytes(size);
}
