/**
 * A patient file's access history: the audit chains of the services, verified here
 * (mirrors `ecrin_client.audit`; the checks themselves are the crypto core's
 * `verifyServedChain`).
 *
 * Each service keeps its own append-only chains per file: the sharing service one
 * (`file:<id>`); the kms and the records-api one per scope (`file:<id>:<scope>`) besides the
 * file's. A reader fetches the chain of each scope it may read. Each service signs the head
 * of every chain it serves; the device pins each service's audit key on first use
 * (`service-keys.json`) and keeps the head it verified of each chain (`audit-heads.json`,
 * the same documents as the Python client's), refusing a chain that does not extend it.
 */

import { AuditChainError, verifyServedChain } from "./core.ts";
import { b64d, b64e, canonicalUuid } from "./encoding.ts";
import { IntegrityError, NotFound, PermissionDenied } from "./errors.ts";
import { SCOPES } from "./records.ts";
import type { Profile } from "./state.ts";
import type { GatewayTransport } from "./transport.ts";

const HEADS = "audit-heads.json";
const SERVICE_KEYS = "service-keys.json";
const SOURCES: [string, string][] = [
  ["sharing", "/v1/files/{file_id}/audit"],
  ["kms", "/v1/keyrings/{file_id}/audit"],
  ["records-api", "/v1/records/audit?file_id={file_id}"],
];
const SCOPE_SOURCES: Record<string, string> = {
  kms: "/v1/keyrings/{file_id}/audit?scope={scope}",
  "records-api": "/v1/records/audit?file_id={file_id}&scope={scope}",
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;

export interface AuditChain {
  service: string;
  chain: string;
  /** False when the service does not expose this chain to this account. */
  available: boolean;
  events: Json[];
  /** null: verified; else the position of the first event that does not verify. */
  brokenAt: number | null;
  signedHead?: Json;
}

export interface AuditTrail {
  fileId: string;
  chains: AuditChain[];
  /** Every available chain verified. */
  verified: boolean;
  /** Every event of every chain, in time order. */
  events: Json[];
}

async function readableScopes(t: GatewayTransport, fileId: string): Promise<string[]> {
  let body: Json;
  try {
    body = await t.json<Json>("GET", `/v1/files/${fileId}`);
  } catch (error) {
    if (error instanceof NotFound || error instanceof PermissionDenied) return [];
    throw error;
  }
  const scopes = body?.scopes;
  return SCOPES.filter((s) => typeof scopes === "object" && scopes !== null && s in scopes);
}

function sources(fileId: string, scopes: string[]): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const [service, template] of SOURCES) {
    out.push([service, `file:${fileId}`, template.replace("{file_id}", fileId)]);
    const scoped = SCOPE_SOURCES[service];
    if (scoped !== undefined) {
      for (const scope of scopes) {
        out.push([service, `file:${fileId}:${scope}`, scoped.replace("{file_id}", fileId).replace("{scope}", scope)]);
      }
    }
  }
  return out;
}

/**
 * Fetch and verify each chain of the file this account may read. Throws `IntegrityError`
 * on a forged, mismatched or rewound head, or a chain this device verified that a service
 * now hides; a chain whose hashes break is reported (`brokenAt`), not thrown.
 */
export async function collectAudit(t: GatewayTransport, fileId: string, profile?: Profile): Promise<AuditTrail> {
  const rawHeads = profile ? await profile.read(HEADS) : undefined;
  const rawKeys = profile ? await profile.read(SERVICE_KEYS) : undefined;
  const heads: Json = typeof rawHeads === "object" && rawHeads !== null ? rawHeads : {};
  const keys: Json = typeof rawKeys === "object" && rawKeys !== null ? rawKeys : {};
  let keysChanged = false;
  const fid = canonicalUuid(fileId, "patient file id");
  const chains: AuditChain[] = [];
  for (const [service, chain, path] of sources(fid, await readableScopes(t, fid))) {
    let body: Json;
    try {
      body = await t.json<Json>("GET", path);
    } catch (error) {
      if (error instanceof NotFound || error instanceof PermissionDenied) {
        chains.push({ service, chain, available: false, events: [], brokenAt: null });
        continue;
      }
      throw error;
    }
    if (!Array.isArray(body?.events) || !body.events.every((e: unknown) => typeof e === "object" && e !== null)
      || body.chain !== chain || body.service !== service) {
      throw new IntegrityError(`the ${service} sent a malformed audit chain`);
    }
    const stored = heads[`${service}:${chain}`];
    const seen = typeof stored === "object" && stored !== null ? (stored.head ?? stored) : null;
    let verified;
    try {
      verified = verifyServedChain(body, {
        service, chain, pinnedKey: typeof keys[service] === "string" ? b64d(keys[service], "audit key") : null, seen,
      });
    } catch (error) {
      if (error instanceof AuditChainError) throw new IntegrityError(error.message);
      throw error;
    }
    if (keys[service] === undefined) {
      keys[service] = b64e(verified.auditKey); // pinned on first use
      keysChanged = true;
    }
    const made: AuditChain = {
      service, chain, available: true, events: body.events, brokenAt: verified.brokenAt,
      signedHead: verified.signedHead.toJSON() as unknown as Json,
    };
    chains.push(made);
    if (made.brokenAt === null) heads[`${service}:${chain}`] = { ...made.signedHead, audit_key: b64e(verified.auditKey) };
  }
  if (!chains.some((c) => c.available)) throw new NotFound("no audit trail of this patient file for you");
  for (const chain of chains) {
    const kept = heads[`${chain.service}:${chain.chain}`];
    const head = typeof kept === "object" && kept !== null ? (kept.head ?? kept) : null;
    if (!chain.available && head && Number(head.seq ?? 0) > 0) {
      throw new IntegrityError(`the ${chain.service} no longer serves the audit chain ${chain.chain} of this file that ` +
        "this device verified before: refusing an audit trail with a chain hidden");
    }
  }
  const verifiedAll = chains.every((c) => !c.available || c.brokenAt === null);
  if (profile) {
    if (keysChanged) await profile.write(SERVICE_KEYS, keys);
    if (verifiedAll) await profile.write(HEADS, heads);
  }
  const events = chains.flatMap((c) => c.events).sort((a, b) => {
    const ka = [String(a.time), String(a.service), String(a.chain)];
    const kb = [String(b.time), String(b.service), String(b.chain)];
    for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return ka[i]! < kb[i]! ? -1 : 1;
    return Number(a.seq ?? 0) - Number(b.seq ?? 0);
  });
  return { fileId: fid, chains, verified: verifiedAll, events };
}
