/**
 * Patients: a patient file, its keyring, and its encrypted identity record (mirrors
 * `ecrin_client.patients`).
 *
 * The servers learn no name, birth date or INS. The identity is a record of kind
 * `patient-identity` in the `administrative` scope; the file carries only blind-index tokens
 * made with the owner's search key: one per name word, one for the full name, one for the
 * INS and one for the birth date. A search sends the token of what was typed; the server
 * answers the files carrying it, and the SDK decrypts their identities and keeps those that
 * really match (tokens are 96-bit, so collisions are possible by design).
 */

import { normaliseIns, normaliseName, ScopeKey, SearchKey, sealEntry, type Scope } from "./core.ts";
import { canonicalUuid, isUuid, utf8 } from "./encoding.ts";
import { EcrinError, integrityFailure, IntegrityError, InvalidInput, NotFound } from "./errors.ts";
import { checkIdentity, IDENTITY_KIND, type PatientIdentity } from "./metadata.ts";
import { readIdentities, type IdentityRead } from "./identity-pages.ts";
import { SCOPES, type Records } from "./records.ts";

const PAGE = 200;
/** Files whose identity is read the old way at once: bounded, for the gateway's sake. */
const PARALLEL = 8;

/** A patient file as this device sees it: the server's facts and the decrypted identity. */
export interface Patient {
  fileId: string;
  relationship: string;
  createdAt?: string;
  /** Undefined when the identity cannot be read (no access to the administrative scope). */
  identity?: PatientIdentity;
  identityRecordId?: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;

export function searchTokens(key: SearchKey, identity: PatientIdentity): string[] {
  const tokens = normaliseName(identity.name).split(" ").filter(Boolean).map((word) => key.nameToken(word));
  tokens.push(key.nameToken(identity.name));
  if (identity.ins) tokens.push(key.insToken(identity.ins));
  tokens.push(key.birthDateToken(identity.birth_date));
  return [...new Set(tokens)];
}

type Query = { kind: "ins" | "birth_date" | "name"; value: string; token: string };

function query(key: SearchKey, text: string): Query {
  try {
    return { kind: "ins", value: normaliseIns(text), token: key.insToken(text) };
  } catch {
    // not an INS
  }
  const day = text.trim();
  if (/^\d{4}-\d{2}-\d{2}$/.test(day) && !Number.isNaN(Date.parse(day))) {
    return { kind: "birth_date", value: day, token: key.birthDateToken(day) };
  }
  if (!normaliseName(text)) throw new InvalidInput("nothing to search for");
  return { kind: "name", value: normaliseName(text), token: key.nameToken(text) };
}

function matches(q: Query, identity: PatientIdentity | undefined): boolean {
  if (identity === undefined) return false;
  if (q.kind === "ins") return identity.ins !== undefined && normaliseIns(identity.ins) === q.value;
  if (q.kind === "birth_date") return identity.birth_date === q.value;
  const words = normaliseName(identity.name).split(" ").filter(Boolean);
  const wanted = q.value.split(" ").filter(Boolean);
  for (let i = 0; i + wanted.length <= words.length; i++) {
    if (wanted.every((w, j) => words[i + j] === w)) return true;
  }
  return false;
}

export class Patients {
  readonly records: Records;
  readonly searchKey: SearchKey;

  constructor(records: Records) {
    this.records = records;
    this.searchKey = SearchKey.forOwner(records.identity);
  }

  private get t() {
    return this.records.client.transport;
  }

  /** File (pending), keyring v1 of the three scopes (activates it), identity record. Every
   * step is retry-safe: the file id is chosen here, the kms answers a repeated initial
   * keyring with 200, and the record create carries an idempotency key. */
  async create(identity: PatientIdentity): Promise<Patient> {
    const checked = checkIdentity(identity);
    const me = this.records.identity;
    const fileId = crypto.randomUUID();
    // Named in the file (not secret: the record's kind is encrypted), so that a page of
    // patients is listed with one bulk read (identity-pages.ts).
    const identityRecordId = crypto.randomUUID();
    await this.records.client.retrying(() => this.t.request("POST", "/v1/files", {
      ok: [200, 201], json: { file_id: fileId, identity_record_id: identityRecordId,
        search_tokens: searchTokens(this.searchKey, checked) },
    }));
    const keys = SCOPES.map((scope) => ScopeKey.generate(fileId, scope));
    // Owned here: only accounts this device grants a rotating role may hand it new keys.
    await this.records.trust.store.ownFile(fileId);
    const entries = keys.map((key) => sealEntry(key, me.publicIdentity(), {
      relationship: "owner", permissions: ["read", "append"], granter: me,
    }).toJSON());
    await this.records.client.retrying(() => this.t.request("PUT", `/v1/keyrings/${fileId}/initial`, {
      ok: [200, 201], json: { entries },
    }));
    await this.records.adoptKeys(keys);
    const content = utf8.encode(JSON.stringify(checked));
    const record = await this.records.create(fileId, "administrative", {
      title: "Identité du patient", kind: IDENTITY_KIND, content_type: "application/json", size: content.length,
      created_at: new Date().toISOString(),
    }, content, { recordId: identityRecordId });
    const patient: Patient = { fileId, relationship: "owner", identity: checked, identityRecordId: record.recordId };
    if (record.createdAt) patient.createdAt = record.createdAt;
    return patient;
  }

  private async files(token?: string): Promise<Json[]> {
    const params: Record<string, string | number | undefined> = { limit: PAGE, token };
    const files: Json[] = [];
    for (;;) {
      const page = await this.t.json<Json>("GET", "/v1/files", { params });
      files.push(...(Array.isArray(page?.items) ? page.items : []));
      if (!page?.next_cursor) return files;
      params.cursor = String(page.next_cursor);
    }
  }

  /** One file's patient, the old way: list its administrative records, read the latest
   * identity (files whose identity record is not named in the file). */
  private async patient(file: Json): Promise<Patient> {
    const fileId = canonicalUuid(file.id, "patient file id");
    const patient: Patient = { fileId, relationship: String(file.relationship ?? "") };
    if (typeof file.created_at === "string") patient.createdAt = file.created_at;
    const scopes = file.scopes ?? {};
    if ("administrative" in scopes) {
      const mine = (await this.records.list(fileId, "administrative" as Scope)).filter((r) => r.metadata.kind === IDENTITY_KIND);
      if (mine.length) {
        const latest = mine.reduce((a, b) =>
          [a.createdAt ?? "", a.recordId] >= [b.createdAt ?? "", b.recordId] ? a : b);
        try {
          const { value } = await this.records.readJson(latest.recordId);
          patient.identity = checkIdentity(value);
          patient.identityRecordId = latest.recordId;
        } catch (error) {
          if (!(error instanceof EcrinError)) throw error;
          // Reported and skipped: one bad record never hides every patient.
          const reason = error instanceof IntegrityError ? error : integrityFailure("the patient's identity record");
          this.records.unreadable.push({ recordId: latest.recordId, version: latest.version, authorId: latest.authorId, reason: reason.message });
        }
      }
    }
    return patient;
  }

  /**
   * Each file's patient, in the files' order: those whose file names its identity record in
   * two requests per page of 200 (identity-pages.ts); the others (files made before that, or
   * left out of the bulk answers) `PARALLEL` at a time, a few requests each.
   */
  private async patients(files: Json[]): Promise<Patient[]> {
    const named = new Map<string, string>();
    for (const f of files) {
      if (typeof f.identity_record_id === "string" && f.identity_record_id !== "" && "administrative" in (f.scopes ?? {})) {
        named.set(canonicalUuid(f.id, "patient file id"), canonicalUuid(f.identity_record_id, "identity record id"));
      }
    }
    const read: IdentityRead = named.size > 0 ? await readIdentities(this.records, named) : new Map();
    const out: Patient[] = new Array(files.length);
    const slow: number[] = [];
    files.forEach((file, i) => {
      const fileId = canonicalUuid(file.id, "patient file id");
      if (!read.has(fileId)) {
        slow.push(i);
        return;
      }
      const found = read.get(fileId);
      const patient: Patient = { fileId, relationship: String(file.relationship ?? "") };
      if (typeof file.created_at === "string") patient.createdAt = file.created_at;
      if (found) {
        patient.identity = found.identity;
        patient.identityRecordId = found.recordId;
      }
      out[i] = patient;
    });
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < slow.length) {
        const i = slow[next++] as number;
        out[i] = await this.patient(files[i] as Json);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, slow.length) }, lane));
    return out;
  }

  /** Every patient file I can open; with `search`, those whose identity matches. */
  async list(search?: string): Promise<Patient[]> {
    if (search === undefined) return this.patients(await this.files());
    const q = query(this.searchKey, search);
    const indexed = await this.files(q.token);
    // Files shared with me (a parent's, a colleague's) carry their owner's search tokens,
    // not mine: those are searched here, after decryption.
    const seen = new Set(indexed.map((f) => String(f.id)));
    const shared = (await this.files()).filter((f) => f.relationship !== "owner" && !seen.has(String(f.id)));
    return (await this.patients([...indexed, ...shared])).filter((p) => matches(q, p.identity));
  }

  /** A patient by file id, or by a search that matches exactly one patient. */
  async get(ref: string): Promise<Patient> {
    const text = ref.trim();
    if (isUuid(text)) {
      const id = canonicalUuid(text, "patient file id");
      const file = await this.t.json<Json>("GET", `/v1/files/${id}`);
      if (String(file.id) !== id) throw integrityFailure("the patient file");
      return (await this.patients([file]))[0] as Patient;
    }
    const found = await this.list(text);
    if (found.length === 0) throw new NotFound(`no patient matches ${JSON.stringify(text)}`);
    if (found.length > 1) throw new InvalidInput(`${found.length} patients match ${JSON.stringify(text)}: give a file id`);
    return found[0]!;
  }
}
