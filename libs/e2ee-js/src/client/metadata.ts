/**
 * What a kiné writes, as the SDK types it (mirrors `ecrin_client.kine`): a record's
 * encrypted metadata and the patient identity record. Both are JSON inside ciphertexts the
 * servers never open; the Python client reads what this SDK writes and the reverse.
 */

import { InvalidInput } from "./errors.ts";

export const IDENTITY_KIND = "patient-identity";

/** The encrypted metadata of a record version (the server sees only its padded size). */
export interface RecordMetadata {
  title: string;
  kind: string;
  content_type: string;
  size: number;
  /** ISO 8601 date-time. */
  created_at: string;
  /** The date the content is about (a session's date), ISO 8601 day. */
  date?: string;
  filename?: string;
  [extra: string]: unknown;
}

/** The administrative identity: only ever stored encrypted (scope `administrative`). */
export interface PatientIdentity {
  name: string;
  /** ISO 8601 day. */
  birth_date: string;
  ins?: string;
  phone?: string;
  email?: string;
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export function checkMetadata(value: unknown): RecordMetadata {
  const m = value as RecordMetadata;
  if (typeof m !== "object" || m === null || typeof m.title !== "string" || m.title.length > 500
    || typeof m.kind !== "string" || typeof m.content_type !== "string"
    || !Number.isInteger(m.size) || m.size < 0 || typeof m.created_at !== "string"
    || Number.isNaN(Date.parse(m.created_at))) {
    throw new InvalidInput("malformed record metadata");
  }
  return m;
}

export function checkIdentity(value: unknown): PatientIdentity {
  const p = value as PatientIdentity;
  if (typeof p !== "object" || p === null || typeof p.name !== "string" || !p.name.trim() || p.name.length > 200
    || typeof p.birth_date !== "string" || !DAY.test(p.birth_date)) {
    throw new InvalidInput("a patient identity has a name and a birth date (YYYY-MM-DD)");
  }
  const out: PatientIdentity = { name: p.name.trim(), birth_date: p.birth_date };
  if (p.ins?.trim()) out.ins = p.ins.replaceAll(" ", "");
  if (p.phone) out.phone = p.phone;
  if (p.email) out.email = p.email;
  return out;
}
