/**
 * A page of patients' identities in two requests, whatever the number of files (mirrors
 * `ecrin_client.identity_pages`).
 *
 * Listing patients one file at a time costs a record listing, a keyring fetch and a read per
 * file. The owner's device names each file's identity record when it creates the file
 * (`identity_record_id`, served with the file: the servers cannot tell which record it is,
 * its kind being encrypted). For a page of such files the device then asks the kms for its
 * `administrative` keyring entries of every file at once (`POST /v1/keyrings/batch`) and the
 * records API for the identity records with their content inline (`POST /v1/records/batch`).
 *
 * Nothing a server says is trusted more for it: each keyring entry goes through
 * `Records.keyFromEntries` (trusted and entitled granter, key rollback), each record through
 * the checks of a single read (its header names this file, the `administrative` scope and
 * this record; both signatures by trusted accounts; no older version than one this device
 * saw; the content decrypts and verifies), and the decrypted metadata must say it is a patient
 * identity. A file the answers leave out, or whose record is too large to come inline, is read
 * the old way by the caller; a file whose record does not verify is reported in
 * `Records.unreadable` and listed without identity.
 */

import { b64d, canonicalUuid, fromUtf8 } from "./encoding.ts";
import { decryptChunks } from "./content.ts";
import { EcrinError, integrityFailure, IntegrityError } from "./errors.ts";
import { checkIdentity, IDENTITY_KIND, type PatientIdentity } from "./metadata.ts";
import type { Records } from "./records.ts";

/** Files per batch request (the routes take up to 200). */
export const BATCH = 200;
/** Pages in flight at once: the servers work on one while this device opens another. */
export const PAGES_AT_ONCE = 3;

/** file id -> (identity, its record id), or null when unreadable (reported). */
export type IdentityRead = Map<string, { identity: PatientIdentity; recordId: string } | null>;

type Json = Record<string, unknown>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a field of server JSON, checked by its caller
function field(obj: unknown, name: string, what = "the server's answer"): any {
  if (typeof obj !== "object" || obj === null || !(name in obj)) throw integrityFailure(what);
  return (obj as Json)[name];
}

function items(body: unknown, what: string): unknown[] {
  const list = field(body, "items", what);
  if (!Array.isArray(list)) throw integrityFailure(what);
  return list;
}

/** The files whose administrative key this device now holds (checked entries), and those
 * whose entries it refuses (an untrusted granter, a key rollback): reported. */
async function keys(records: Records, fileIds: string[], marks: Record<string, number>
): Promise<{ held: Set<string>; refused: Map<string, IntegrityError> }> {
  const body = await records.client.transport.json("POST", "/v1/keyrings/batch", {
    json: { file_ids: fileIds, scope: "administrative" },
  });
  const asked = new Set(fileIds);
  const held = new Set<string>();
  const refused = new Map<string, IntegrityError>();
  for (const item of items(body, "the keyring answer")) {
    const fileId = String(field(item, "file_id", "the keyring answer"));
    if (!asked.has(fileId) || held.has(fileId) || refused.has(fileId)) throw integrityFailure("the keyring answer");
    try {
      await records.keyFromEntries(fileId, "administrative", undefined, item, marks);
    } catch (error) {
      if (error instanceof IntegrityError) {
        refused.set(fileId, error); // never used, never skipped quietly
        continue;
      }
      if (error instanceof EcrinError) continue; // no key for me here: the caller reads it the old way
      throw error;
    }
    held.add(fileId);
  }
  return { held, refused };
}

/** One identity record of the batch answer, opened as `Records.read` opens one; null when it
 * came without its content (too large to come inline: read it alone). */
async function identity(records: Records, item: unknown, fileId: string, recordId: string
): Promise<{ identity: PatientIdentity; recordId: string } | null> {
  const what = "the patient's identity record";
  if (String(field(item, "file_id", what)) !== fileId || field(item, "scope", what) !== "administrative") {
    throw integrityFailure(what);
  }
  const current = Number(field(item, "current_version", what));
  await records.checkNotOlder(recordId, current);
  const opened = await records.open(field(item, "version", what), {
    record: item as Json, expectRecord: recordId, expectVersion: current,
  });
  if (opened.info.metadata.kind !== IDENTITY_KIND) throw integrityFailure(what);
  const content = (item as Json).content;
  if (content === undefined || content === null) return null;
  const inline = b64d(content, "content");
  // Cut into the stream's chunks as a download would be: missing or extra bytes fail.
  const opening = await records.opening(opened.header, opened.metadataCiphertext);
  const body = new Blob([inline as Uint8Array<ArrayBuffer>]).stream();
  let plaintext: Uint8Array;
  try {
    plaintext = new Uint8Array(await new Response(decryptChunks(opening, body)).arrayBuffer());
  } catch {
    throw integrityFailure(what);
  }
  try {
    return { identity: checkIdentity(JSON.parse(fromUtf8(plaintext))), recordId };
  } catch {
    throw integrityFailure(what);
  }
}

/** One page: the keyring and the record requests go out together (the records do not
 * depend on the keys until they are opened, here, once both answers are in). */
async function page(records: Records, wanted: Map<string, string>): Promise<IdentityRead> {
  const out: IdentityRead = new Map();
  const marks: Record<string, number> = {};
  const byRecord = new Map([...wanted].map(([fileId, recordId]) => [recordId, fileId]));
  const [{ held, refused }, answer] = await Promise.all([
    keys(records, [...wanted.keys()], marks),
    records.client.transport.json("POST", "/v1/records/batch", { json: { record_ids: [...byRecord.keys()] } }),
  ]);
  for (const [fileId, error] of refused) {
    records.unreadable.push({ recordId: wanted.get(fileId) as string, reason: error.message });
    out.set(fileId, null);
  }
  for (const item of items(answer, "the record answer")) {
    const recordId = canonicalUuid(field(item, "record_id", "the record answer"), "record id");
    const fileId = byRecord.get(recordId);
    if (fileId === undefined) throw integrityFailure("the record answer");
    byRecord.delete(recordId);
    if (!held.has(fileId)) continue; // no key here (refused: reported above; or none: read the old way)
    let found;
    try {
      found = await identity(records, item, fileId, recordId);
    } catch (error) {
      if (!(error instanceof EcrinError)) throw error;
      // Reported and skipped: one bad record never hides every patient.
      const reason = error instanceof IntegrityError ? error : integrityFailure("the patient's identity record");
      records.unreadable.push({ recordId, reason: reason.message });
      out.set(fileId, null);
      continue;
    }
    if (found !== null) {
      out.set(fileId, found);
      marks[recordId] = Number(field(item, "current_version"));
    }
  }
  await records.client.profile.rememberVersions(marks);
  return out;
}

/**
 * `wanted`: file id -> the identity record id its file names. Answers for the files read here
 * (pages of up to `BATCH`, `PAGES_AT_ONCE` at a time, two requests each); those missing from
 * the answer are for the caller to read one by one.
 */
export async function readIdentities(records: Records, wanted: Map<string, string>): Promise<IdentityRead> {
  const files = [...wanted.keys()];
  const pages: string[][] = [];
  for (let i = 0; i < files.length; i += BATCH) pages.push(files.slice(i, i + BATCH));
  const out: IdentityRead = new Map();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < pages.length) {
      const mine = pages[next++] as string[];
      const read = await page(records, new Map(mine.map((f) => [f, wanted.get(f) as string])));
      for (const [fileId, value] of read) out.set(fileId, value);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PAGES_AT_ONCE, pages.length) }, lane));
  return out;
}
