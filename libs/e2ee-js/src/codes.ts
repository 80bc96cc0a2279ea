/**
 * Typeable codes (mirrors `ecrin_e2ee.codes`): Crockford base32 in groups, each group ending
 * in a Damm check character over GF(32) (x^5 + x^2 + 1), quasigroup `x * y = 2x + y`.
 * Parsing is forgiving: case-insensitive, `O` reads as `0`, `I`/`L` as `1`, spaces and
 * hyphens ignored.
 */

import { InvalidCode } from "./errors.ts";

export const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const GROUP_DATA = 4;
const VALUES = new Map<string, number>([...ALPHABET].map((c, i) => [c, i]));
VALUES.set("O", 0).set("I", 1).set("L", 1);

function gf32Double(x: number): number {
  x <<= 1;
  return x & 0x20 ? x ^ 0x25 : x;
}

function damm(values: number[]): number {
  let interim = 0;
  for (const v of values) interim = gf32Double(interim) ^ v;
  return interim;
}

/** The check symbol c such that the Damm fold over values + [c] gives 0. */
export function checkValue(values: number[]): number {
  return gf32Double(damm(values));
}

function toBigInt(data: Uint8Array): bigint {
  let n = 0n;
  for (const b of data) n = (n << 8n) | BigInt(b);
  return n;
}

/** Encode `data` (a big-endian integer) as `nChars` base32 digits, grouped with checks. */
export function encodeGroups(data: Uint8Array, nChars: number): string {
  const number = toBigInt(data);
  if (number >> BigInt(5 * nChars)) throw new RangeError("data does not fit");
  const digits: number[] = [];
  for (let i = 0; i < nChars; i++) {
    digits.push(Number((number >> BigInt(5 * (nChars - 1 - i))) & 31n));
  }
  const groups: string[] = [];
  for (let start = 0; start < nChars; start += GROUP_DATA) {
    const chunk = digits.slice(start, start + GROUP_DATA);
    chunk.push(checkValue(chunk));
    groups.push(chunk.map((v) => ALPHABET[v]).join(""));
  }
  return groups.join("-");
}

/** Inverse of {@link encodeGroups}; throws {@link InvalidCode}. */
export function decodeGroups(text: string, nChars: number, nBytes: number): Uint8Array {
  if (typeof text !== "string") throw new InvalidCode("code must be text");
  const cleaned = text.replace(/\s+/g, "").replace(/-/g, "").toUpperCase();
  const nGroups = Math.ceil(nChars / GROUP_DATA);
  if ([...cleaned].length !== nChars + nGroups) {
    throw new InvalidCode(`code must have ${nChars + nGroups} characters`);
  }
  const values: number[] = [];
  for (const c of cleaned) {
    const v = VALUES.get(c);
    if (v === undefined) throw new InvalidCode("code contains a character outside the alphabet");
    values.push(v);
  }
  const digits: number[] = [];
  let pos = 0;
  for (let g = 0; g < nGroups; g++) {
    const size = Math.min(GROUP_DATA, nChars - g * GROUP_DATA);
    const group = values.slice(pos, pos + size + 1);
    pos += size + 1;
    if (damm(group) !== 0) throw new InvalidCode(`checksum mismatch in group ${g + 1}`);
    digits.push(...group.slice(0, -1));
  }
  let number = 0n;
  for (const d of digits) number = (number << 5n) | BigInt(d);
  if (number >> BigInt(8 * nBytes)) throw new InvalidCode("code is out of range");
  const out = new Uint8Array(nBytes);
  for (let i = nBytes - 1; i >= 0; i--) {
    out[i] = Number(number & 0xffn);
    number >>= 8n;
  }
  return out;
}
