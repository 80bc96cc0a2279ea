/**
 * Audit-chain verification on the device (mirrors `ecrin_client.audit`, `docs/protocol.md`
 * §16): every event hash is recomputed, the chain must run unbroken from 64 zeros, the
 * service's signed head must verify under the key pinned for it and name the last event
 * served, and a chain must extend the head this device verified before.
 *
 * Event hash = SHA-256 of Python's `json.dumps(fields, sort_keys=True,
 * separators=(",", ":"))` (ASCII-escaped) over (chain, seq, time, actor, action, target,
 * outcome, request_id, service, prev_hash).
 */

import { sha256 } from "./_sodium.ts";
import { b64d, equalBytes, pythonJson, toHex, utf8 } from "./_wire.ts";
import { AuditHead, GENESIS, SignedAuditHead, type AuditHeadJson } from "./audit_head.ts";
import { DecryptionError, E2EEError } from "./errors.ts";

export const HASHED = ["chain", "seq", "time", "actor", "action", "target", "outcome", "request_id",
  "service", "prev_hash"] as const;

export type AuditEvent = Record<string, unknown>;

/** Why a served chain was refused. */
export type AuditRefusal = "unsigned" | "key-changed" | "bad-signature" | "not-last-event" | "rewound";

/** A served audit chain that must be refused (its reason says which rule it broke). */
export class AuditChainError extends E2EEError {
  override name = "AuditChainError";
  readonly reason: AuditRefusal;

  constructor(reason: AuditRefusal, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** The SHA-256 (hex) of an event, as the services compute it. */
export function eventHash(event: AuditEvent): string {
  const fields: Record<string, unknown> = {};
  for (const k of HASHED) {
    if (!(k in event)) throw new TypeError(`event lacks ${k}`);
    fields[k] = event[k];
  }
  const h = sha256();
  h.update(utf8(pythonJson(fields, { ensureAscii: true })));
  return toHex(h.digest());
}

/** null when the events form one unbroken chain from its first event; otherwise the
 * 1-based position of the first event that does not verify. */
export function verifyChain(events: readonly AuditEvent[], options: { chain?: string; service?: string } = {}): number | null {
  let previous = GENESIS;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    let ok: boolean;
    try {
      ok = event["seq"] === i + 1 && event["prev_hash"] === previous && eventHash(event) === event["hash"]
        && (options.chain === undefined || event["chain"] === options.chain)
        && (options.service === undefined || event["service"] === options.service);
    } catch {
      ok = false;
    }
    if (!ok) return i + 1;
    previous = event["hash"] as string;
  }
  return null;
}

export interface VerifiedChain {
  signedHead: SignedAuditHead;
  /** The service's audit public key (to pin on first use). */
  auditKey: Uint8Array;
  /** null: every event verified; else the position of the first that does not. */
  brokenAt: number | null;
}

/**
 * Check what an audit route served (`{events, head, signature, audit_key}`) for `service`
 * and `chain`: the head is signed by `audit_key`, which must equal `pinnedKey` when the
 * device pinned one; it names the last event served; and the chain extends `seen`, the
 * head this device verified before. Throws {@link AuditChainError}; a chain whose hashes
 * break is reported in `brokenAt`, not thrown (as the Python client does).
 */
export function verifyServedChain(body: unknown, options: {
  service: string; chain: string; pinnedKey?: Uint8Array | null; seen?: AuditHeadJson | { seq: number; hash: string } | null;
}): VerifiedChain {
  const { service, chain } = options;
  let signed: SignedAuditHead, key: Uint8Array, events: AuditEvent[];
  try {
    const b = body as { events?: unknown; audit_key?: unknown };
    if (!Array.isArray(b.events)) throw new TypeError("events");
    events = b.events as AuditEvent[];
    signed = SignedAuditHead.fromJSON(body);
    key = b64d(b.audit_key, { size: 32, what: "audit key" });
  } catch {
    throw new AuditChainError("unsigned", `the ${service} sent its audit chain without a valid signed head`);
  }
  if (options.pinnedKey && !equalBytes(options.pinnedKey, key)) {
    throw new AuditChainError("key-changed",
      `the ${service} signed its audit chain with a key that is not the one this device pinned`);
  }
  try {
    signed.verify(key);
  } catch (e) {
    if (!(e instanceof DecryptionError)) throw e;
    throw new AuditChainError("bad-signature", `the ${service}'s signature of its audit head does not verify`);
  }
  const head: AuditHead = signed.head;
  const last = events.length ? events[events.length - 1]! : { seq: 0, hash: GENESIS };
  if (head.service !== service || head.chain !== chain || head.seq !== events.length || head.hash !== last["hash"]) {
    throw new AuditChainError("not-last-event", `the ${service}'s signed audit head is not the last event of the chain it served`);
  }
  const seen = options.seen;
  if (seen && typeof seen.seq === "number" && typeof seen.hash === "string" && seen.seq !== 0) {
    if (seen.seq > events.length || events[seen.seq - 1]!["hash"] !== seen.hash) {
      throw new AuditChainError("rewound",
        `the ${service}'s audit chain ${chain} does not extend what this device verified (event ${seen.seq})`);
    }
  }
  return { signedHead: signed, auditKey: key, brokenAt: verifyChain(events, { chain, service }) };
}

