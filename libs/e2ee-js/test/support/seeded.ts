/** The vector generator's deterministic seams (as `tests/e2ee/vectors.py`). */

import { blake2b } from "../../src/_sodium.ts";
import { _setClock, _setRandomSource } from "../../src/_seams.ts";
import { concat, u64, utf8 } from "../../src/_wire.ts";

/** `BLAKE2b-512(key=seed, counter(8))` blocks: reproducible, never used in production. */
export function seededRandom(seed: string): (size: number) => Uint8Array {
  const key = utf8(seed);
  let counter = 0;
  return (size) => {
    let out: Uint8Array = new Uint8Array(0);
    while (out.length < size) {
      out = concat(out, blake2b(u64(counter), 64, key, new Uint8Array(0)));
      counter += 1;
    }
    return out.slice(0, size);
  };
}

export const FIXED_NOW = new Date(Date.UTC(2026, 2, 1, 9, 30));

/** Run `body` with the seeded random source and a fixed clock, then restore both. */
export function deterministic<T>(seed: string, body: () => T, now: Date = FIXED_NOW): T {
  _setRandomSource(seededRandom(seed));
  _setClock(() => now);
  try {
    return body();
  } finally {
    _setRandomSource();
    _setClock();
  }
}
