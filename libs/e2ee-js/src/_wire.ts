/**
 * Encodings at the edge (mirrors `ecrin_e2ee._wire`): base64url, UUIDs, the canonical
 * field encoding, BLAKE2b subkeys and digests, timestamps, and Python-compatible JSON.
 *
 * The canonical encoding is what every signature and every associated-data string covers:
 *
 *     canonical(label, f1, ..., fn) = u8 len(label) || label || (u32be len(fi) || fi)*
 *
 * It is injective, so two different field tuples never sign or bind the same bytes.
 */

import { blake2b, sodium } from "./_sodium.ts";
import { FormatError } from "./errors.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Strict UTF-8 decoding (throws TypeError on invalid bytes). */
export function fromUtf8(data: Uint8Array): string {
  return decoder.decode(data);
}

/** ASCII bytes of a string; throws on a non-ASCII character (Python's `.encode("ascii")`). */
export function ascii(text: string): Uint8Array {
  // eslint-disable-next-line no-control-regex -- the ASCII range starts at NUL, on purpose
  if (!/^[\x00-\x7f]*$/.test(text)) throw new FormatError("expected ASCII text");
  return encoder.encode(text);
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Constant-time equality of two byte strings (false when the lengths differ). */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && (a.length === 0 || sodium.memcmp(a, b));
}

/** base64url without padding. */
export function b64e(data: Uint8Array): string {
  return sodium.to_base64(data, sodium.base64_variants.URLSAFE_NO_PADDING);
}

/** Strict base64url decoding (padding optional, canonical only); throws FormatError. */
export function b64d(text: unknown, options: { size?: number; what?: string } = {}): Uint8Array {
  const what = options.what ?? "value";
  if (typeof text !== "string") throw new FormatError(`${what}: expected a base64url string`);
  const stripped = text.replace(/=+$/, "");
  if (!/^[A-Za-z0-9_-]*$/.test(stripped) || stripped.length % 4 === 1) {
    throw new FormatError(`${what}: invalid base64url`);
  }
  let raw: Uint8Array;
  try {
    raw = stripped.length === 0 ? new Uint8Array(0)
      : sodium.from_base64(stripped, sodium.base64_variants.URLSAFE_NO_PADDING);
  } catch {
    throw new FormatError(`${what}: invalid base64url`);
  }
  if (b64e(raw) !== stripped) throw new FormatError(`${what}: non-canonical base64url`);
  if (options.size !== undefined && raw.length !== options.size) {
    throw new FormatError(`${what}: expected ${options.size} bytes`);
  }
  return raw;
}

export function toHex(data: Uint8Array): string {
  return sodium.to_hex(data);
}

export function fromHex(text: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) throw new FormatError("invalid hex");
  return sodium.from_hex(text.toLowerCase());
}

/** A UUID in its canonical text form: 36 lowercase characters. */
export type Uuid = string;

/** Accept a UUID string (as Python's `uuid.UUID` does) and return its canonical form. */
export function parseUuid(value: unknown, what = "id"): Uuid {
  if (typeof value !== "string") throw new FormatError(`${what}: expected a UUID string`);
  let hex = value.trim().replace(/^urn:uuid:/i, "").replace(/^\{|\}$/g, "").replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new FormatError(`${what}: invalid UUID`);
  hex = hex.toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The 16 bytes of a UUID (RFC 4122 order, Python's `UUID.bytes`). */
export function uuidBytes(id: Uuid): Uint8Array {
  return fromHex(parseUuid(id).replace(/-/g, ""));
}

export function uuidFromBytes(data: Uint8Array): Uuid {
  if (data.length !== 16) throw new FormatError("a UUID is 16 bytes");
  return parseUuid(toHex(data));
}

/** A fresh random (version 4) UUID, for ids the client chooses. */
export function randomUuid(): Uuid {
  return globalThis.crypto.randomUUID();
}

export function u32(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError("u32 out of range");
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

export function u64(value: number | bigint): Uint8Array {
  const big = BigInt(value);
  if (big < 0n || big > 0xffffffffffffffffn) throw new RangeError("u64 out of range");
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, big);
  return out;
}

export function readU32(data: Uint8Array, offset: number): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(offset);
}

/** A big-endian u64 as a number; throws beyond 2^53 (no length or time gets there). */
export function readU64(data: Uint8Array, offset: number): number {
  const big = new DataView(data.buffer, data.byteOffset, data.byteLength).getBigUint64(offset);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError("u64 too large");
  return Number(big);
}

/** Injective encoding of a domain label and byte fields (see module doc). */
export function canonical(label: string | Uint8Array, ...fields: Uint8Array[]): Uint8Array {
  const l = typeof label === "string" ? utf8(label) : label;
  if (l.length > 255) throw new RangeError("label too long");
  const parts: Uint8Array[] = [Uint8Array.of(l.length), l];
  for (const f of fields) parts.push(u32(f.length), f);
  return concat(...parts);
}

/** BLAKE2b keyed KDF: `BLAKE2b(out=size, key=key, person=context padded to 16, msg="")`. */
export function deriveKey(key: Uint8Array, context: string, size = 32): Uint8Array {
  return blake2b(new Uint8Array(0), size, key, ascii(context));
}

/** Unkeyed BLAKE2b with a 16-byte personalisation. */
export function digest(data: Uint8Array, context: string, size = 32): Uint8Array {
  return blake2b(data, size, null, ascii(context));
}

/** Seconds since the epoch; `null` encodes "unbounded" as 0. */
export function timestamp(value: Date | null | undefined): number {
  if (value === null || value === undefined) return 0;
  const ms = value.getTime();
  if (!Number.isFinite(ms)) throw new RangeError("invalid date");
  return Math.floor(ms / 1000);
}

export function fromTimestamp(value: number): Date | null {
  return value === 0 ? null : new Date(value * 1000);
}

/** A required field of a JSON object (throws FormatError). */
export function field(obj: unknown, name: string): unknown {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new FormatError("expected a JSON object");
  }
  if (!Object.prototype.hasOwnProperty.call(obj, name)) {
    throw new FormatError(`missing field '${name}'`);
  }
  return (obj as Record<string, unknown>)[name];
}

/** A JSON integer (not a boolean, not a float). */
export function intField(obj: unknown, name: string): number {
  const value = field(obj, name);
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new FormatError(`${name} must be an integer`);
  }
  return value;
}

export function stringField(obj: unknown, name: string): string {
  const value = field(obj, name);
  if (typeof value !== "string") throw new FormatError(`${name} must be a string`);
  return value;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator](), ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next(), y = ib.next();
    if (x.done || y.done) return x.done ? (y.done ? 0 : -1) : 1;
    const cx = x.value.codePointAt(0)!, cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx - cy;
  }
}

/**
 * `json.dumps(value, sort_keys=True, ...)` as Python writes it: keys sorted by code point,
 * `separators=(",", ":")` without `indent`, `(",", ": ")` with it; `ensureAscii` escapes
 * every character outside 0x20..0x7e as `\uXXXX` (Python's default `ensure_ascii=True`).
 * Integers print as integers; other numbers as JavaScript prints them (Python would write
 * `1.0` for a float JavaScript cannot tell from `1`).
 */
export function pythonJson(value: unknown, options: { ensureAscii?: boolean; indent?: number } = {}): string {
  const indent = options.indent;
  const render = (v: unknown, level: number): string => {
    if (v === null) return "null";
    if (typeof v === "boolean") return v ? "true" : "false";
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new TypeError("JSON cannot hold NaN or Infinity");
      return JSON.stringify(v);
    }
    if (typeof v === "string") return JSON.stringify(v);
    const open = indent === undefined ? "" : "\n" + " ".repeat(indent * (level + 1));
    const close = indent === undefined ? "" : "\n" + " ".repeat(indent * level);
    const comma = indent === undefined ? "," : ",";
    const colon = indent === undefined ? ":" : ": ";
    if (Array.isArray(v)) {
      if (v.length === 0) return "[]";
      return "[" + open + v.map((x) => render(x, level + 1)).join(comma + open) + close + "]";
    }
    if (typeof v === "object") {
      const keys = Object.keys(v as object).sort(compareCodePoints);
      if (keys.length === 0) return "{}";
      return "{" + open + keys.map((k) =>
        JSON.stringify(k) + colon + render((v as Record<string, unknown>)[k], level + 1),
      ).join(comma + open) + close + "}";
    }
    throw new TypeError(`not JSON: ${typeof v}`);
  };
  const text = render(value, 0);
  if (!options.ensureAscii) return text;
  return text.replace(/[^\x20-\x7e\n]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}
