/** Tiny assertions that run in Node and in a browser page alike (no node:assert there). */

import { pythonJson, toHex } from "../../src/_wire.ts";

export class CheckFailed extends Error {
  override name = "CheckFailed";
}

export function ok(condition: unknown, message = "expected a true condition"): asserts condition {
  if (!condition) throw new CheckFailed(message);
}

export function eq<T>(actual: T, expected: T, what = "value"): void {
  if (actual !== expected) throw new CheckFailed(`${what}: ${String(actual)} !== ${String(expected)}`);
}

export function bytesEq(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  if (actual.length !== expected.length || toHex(actual) !== toHex(expected)) {
    throw new CheckFailed(`${what}: ${toHex(actual).slice(0, 64)}… !== ${toHex(expected).slice(0, 64)}…`);
  }
}

export function jsonEq(actual: unknown, expected: unknown, what = "json"): void {
  const a = pythonJson(actual), e = pythonJson(expected); // key order does not matter
  if (a !== e) throw new CheckFailed(`${what}: ${a} !== ${e}`);
}

/** `fn` must throw an instance of `cls` (and, for DecryptionError, the opaque message). */
export function throws(fn: () => unknown, cls: new (...args: never[]) => Error, what = "call"): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new CheckFailed(`${what}: threw ${String(e)}, not ${cls.name}`);
    return;
  }
  throw new CheckFailed(`${what}: did not throw ${cls.name}`);
}

export async function rejects(fn: () => Promise<unknown>, cls: new (...args: never[]) => Error, what = "call"): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new CheckFailed(`${what}: threw ${String(e)}, not ${cls.name}`);
    return;
  }
  throw new CheckFailed(`${what}: did not throw ${cls.name}`);
}

/** A copy of `data` with bit 0 of byte `index` flipped. */
export function flip(data: Uint8Array, index: number): Uint8Array {
  const out = Uint8Array.from(data);
  out[index] = out[index]! ^ 1;
  return out;
}
