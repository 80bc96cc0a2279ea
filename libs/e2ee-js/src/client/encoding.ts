/** base64url without padding, the API's encoding for bytes (docs/accounts.md), and UUIDs. */

import { InvalidInput, ServerError } from "./errors.ts";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const VALUES = new Map([...ALPHABET].map((c, i) => [c, i]));

/** Plain JavaScript (no `Buffer`): the SDK runs in browsers as well as Node. */
export function b64e(data: Uint8Array): string {
  let out = "";
  for (let i = 0; i < data.length; i += 3) {
    const n = (data[i]! << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
    const left = data.length - i;
    out += ALPHABET[(n >> 18) & 63]! + ALPHABET[(n >> 12) & 63]!;
    if (left > 1) out += ALPHABET[(n >> 6) & 63]!;
    if (left > 2) out += ALPHABET[n & 63]!;
  }
  return out;
}

function decode64(text: string): Uint8Array {
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let value = 0;
  let at = 0;
  for (const c of text) {
    value = (value << 6) | VALUES.get(c)!;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (value >> bits) & 0xff;
    }
  }
  if ((value & ((1 << bits) - 1)) !== 0) throw new Error("non-canonical base64");
  return out;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Decode what a server sent; a malformed value is a `ServerError`. */
export function b64d(text: unknown, what = "value"): Uint8Array {
  if (typeof text !== "string" || !B64URL.test(text) || text.length % 4 === 1) {
    throw new ServerError(`the server sent an invalid ${what}`);
  }
  try {
    return decode64(text);
  } catch {
    throw new ServerError(`the server sent an invalid ${what}`);
  }
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** The canonical (lower-case, hyphenated) form of a UUID typed or received. */
export function canonicalUuid(value: unknown, what = "account id"): string {
  const text = String(value).trim().replace(/^\{|\}$/g, "").replace(/^urn:uuid:/i, "");
  if (!UUID.test(text)) throw new InvalidInput(`${what} must be a UUID`);
  const hex = text.replaceAll("-", "").toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function isUuid(value: string): boolean {
  return UUID.test(value.trim());
}

/** A fingerprint as digits only: no spaces, lower case. */
export function compact(fingerprint: string): string {
  return fingerprint.split(/\s+/).join("").toLowerCase();
}

/** A fingerprint in groups of four hex digits, as shown to compare in person. */
export function grouped(hexDigits: string): string {
  return (hexDigits.match(/.{1,4}/g) ?? []).join(" ");
}

export function toHex(data: Uint8Array): string {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text: string): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) throw new InvalidInput("not hex digits");
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

export const utf8 = new TextEncoder();
export const fromUtf8 = (data: Uint8Array): string => new TextDecoder("utf-8", { fatal: true }).decode(data);

export function randomToken(bytes = 24): string {
  return b64e(crypto.getRandomValues(new Uint8Array(bytes)));
}
