/**
 * Deterministic seams: the only sources of randomness and time in the library.
 *
 * Production code calls {@link randomBytes} and {@link now}. Tests (and the known-answer
 * vector generator) replace them with {@link _setRandomSource} and {@link _setClock} to make
 * every output reproducible. Nothing else in the library may call a random source directly.
 */

import { sodium } from "./_sodium.ts";

type RandomSource = (size: number) => Uint8Array;

const systemRandom: RandomSource = (size) => sodium.randombytes_buf(size);
const systemClock = (): Date => new Date();

let randomSource: RandomSource = systemRandom;
let clock: () => Date = systemClock;

/** `size` bytes from the CSPRNG (libsodium `randombytes_buf`). */
export function randomBytes(size: number): Uint8Array {
  const out = randomSource(size);
  if (out.length !== size) throw new Error("random source returned the wrong length");
  return out;
}

/** The current time. */
export function now(): Date {
  return clock();
}

/** Tests only: replace (or, with no argument, restore) the random source. */
export function _setRandomSource(source?: RandomSource): void {
  randomSource = source ?? systemRandom;
}

/** Tests only: replace (or, with no argument, restore) the clock. */
export function _setClock(source?: () => Date): void {
  clock = source ?? systemClock;
}
