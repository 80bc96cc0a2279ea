/**
 * The one module through which screens reach Écrin: it calls the TypeScript SDK
 * (`@ecrin/e2ee/client`, libs/e2ee-js/src/client). Screens never call fetch or libsodium.
 * Two other modules import the SDK, narrowly: forms.ts its error classes (to explain them
 * in the user's language), device-store.ts the crypto core's `localSeal` (the sealed device
 * state).
 *
 * Where the SDK still lacks something the screens would like, the function says `TODO-SDK`;
 * a function the SDK cannot serve at all throws
 * `SdkPending`, and the screens show a clear message instead of failing. The SDK's errors
 * reach the screens as they are; forms.ts `explain` turns them into the user's language.
 *
 * What the adapter guarantees the screens: dates are ISO strings (the screens format them as
 * JJ/MM/AAAA), progress is reported in bytes, and no function returns a key.
 */

import {
  EcrinClient, offThreadSlowCrypto, openSession, SecondFactorRequired, Unavailable,
  type RecordInfo, type Session,
} from "@ecrin/e2ee/client";
import type { IdentityKeys } from "@ecrin/e2ee";

import { formatFrenchDate } from "./dates.ts";
import { SealedDeviceStore } from "./device-store.ts";
import { forgetThisDevice } from "./forget.ts";
import { scriptUrl } from "./trusted-types.ts";

declare const __ECRIN_WORKER_URL__: string;

export class SdkPending extends Error {
  constructor(what: string) {
    super(`TODO-SDK: ${what} is not wired to @ecrin/e2ee yet`);
    this.name = "SdkPending";
  }
}

/** The SDK's roles (a parent or guardian signs up as a "representative"). */
export type Role = "practitioner" | "staff" | "patient" | "representative";
export type Scope = "clinical" | "shared" | "administrative";
export type NoteKind = "bilan" | "session-note" | "exercise-program";
export type DocumentKind = "prescription" | "imaging" | "letter" | "report" | "document";
export type Relationship = "patient" | "parent" | "guardian" | "care_team" | "replacement" | "secretary";

export interface PatientIdentity {
  name: string;
  /** ISO date. */
  birth_date: string;
  ins?: string;
}

export interface Patient {
  id: string;
  identity: PatientIdentity;
}

export interface Bilan {
  date: string;
  motif: string;
  prescription_ref?: string;
  anamnesis?: string;
  clinical_exam?: string;
  diagnostic_kine?: string;
  objectives?: string[];
  plan?: string;
}

export interface SessionNote {
  date: string;
  acts: string[];
  pain?: number;
  notes?: string;
}

export interface Exercise {
  name: string;
  sets: number;
  reps: number;
  frequency?: string;
  instructions?: string;
}

export interface ExerciseProgram {
  date: string;
  exercises: Exercise[];
  notes?: string;
}

export type NoteContent = Bilan | SessionNote | ExerciseProgram;

export interface RecordSummary {
  record_id: string;
  version: number;
  kind: string;
  title: string;
  scope: Scope;
  content_type: string;
  size: number;
  created_at: string;
  date?: string;
  filename?: string;
}

export interface Member {
  grant_id: string;
  account_id: string;
  relationship: string;
  scopes: Record<string, string>;
}

export interface PendingInvitation {
  invitation_id: string;
  relationship: string;
  expires_at: string;
}

export interface SharingOverview {
  members: Member[];
  pending: PendingInvitation[];
}

export interface Invitation {
  invitation_id: string;
  /** The one-time code: shown once, printed or put in a QR code, never stored or sent. */
  code: string;
}

export interface AuditEvent {
  at: string;
  actor: string;
  action: string;
  outcome: string;
}

export interface AuditTimeline {
  verified: boolean;
  events: AuditEvent[];
}

export interface SessionInfo {
  id: string;
  created_at: string;
  current: boolean;
  user_agent?: string;
}

export interface TotpEnrolment {
  /** otpauth:// URI, shown as a QR code once, for the authenticator app. */
  uri: string;
  secret: string;
}

export type Progress = (done: number, total: number) => void;

export class SecondFactorNeeded extends Error {
  constructor() {
    super("second factor required");
    this.name = "SecondFactorNeeded";
  }
}

/** The unlocked client, as kept by the key store. */
export interface UnlockedSession {
  role: Role;
  wipe(): void;
}

// --- the SDK client of this tab -------------------------------------------------------
//
// One client per tab. Tokens stay in memory, so a reload forgets the login as well as the
// keys; what the trust rule and rollback checks need (pins, bindings, high-water marks)
// outlives a reload, sealed under the account's identity (device-store.ts). Argon2id and
// record content run in the crypto worker, the content-hashed bundle of the SDK's
// worker.ts that the build made.

const slow = offThreadSlowCrypto({ workerUrl: scriptUrl(__ECRIN_WORKER_URL__) });
let client: EcrinClient | null = null;
let store: SealedDeviceStore | null = null;
let session: Session | null = null;

async function theClient(): Promise<EcrinClient> {
  if (client === null) {
    store = new SealedDeviceStore();
    client = await EcrinClient.open(location.origin, { store, slow });
  }
  return client;
}

function unlocked(): Session {
  if (session === null) throw new Error("locked");
  return session;
}

/** Opens the device state sealed for this account, then the session over the same keys. */
async function wrap(role: Role, c: EcrinClient, identity: IdentityKeys): Promise<UnlockedSession> {
  await store?.attach(identity);
  const opened = openSession(c, identity);
  session = opened;
  return {
    role,
    wipe() {
      // JavaScript cannot promise the bytes are gone; dropping every reference is what it can do.
      if (session === opened) {
        session = null;
        store?.detach();
      }
    },
  };
}

function summary(info: RecordInfo): RecordSummary {
  const m = info.metadata;
  return {
    record_id: info.recordId, version: info.version, kind: m.kind, title: m.title, scope: info.scope,
    content_type: m.content_type, size: m.size, created_at: m.created_at,
    ...(m.date ? { date: m.date } : {}), ...(m.filename ? { filename: m.filename } : {}),
  };
}

/** Where each kind is stored (libs/client `default_scope`): the patient side sees `shared`. */
function scopeOf(kind: string): Scope {
  return ["exercise-program", "prescription", "letter"].includes(kind) ? "shared" : "clinical";
}

const TITLES: Record<string, string> = {
  "bilan": "Bilan", "session-note": "Note de séance", "exercise-program": "Programme d'exercices",
};

// --- accounts -------------------------------------------------------------------------

/** Creates the account; returns the recovery key text, to be shown once. */
export async function signup(email: string, passphrase: string, role: Role
): Promise<{ recoveryKey: string }> {
  const created = await (await theClient()).signup(email, passphrase, role);
  return { recoveryKey: created.recoveryKey };
}

/** Logs in and unlocks; throws SecondFactorNeeded when the account has one and no code was given. */
export async function login(email: string, passphrase: string, totp?: string): Promise<UnlockedSession> {
  const c = await theClient();
  let result;
  try {
    result = await c.login(email, passphrase, { unlock: true, ...(totp ? { totpCode: totp } : {}) });
  } catch (error) {
    if (error instanceof SecondFactorRequired) throw new SecondFactorNeeded();
    throw error;
  }
  // One Argon2id: the login opened the key wrap and hands back the identity.
  const identity = result.identity ?? await c.unlock(passphrase);
  return wrap(result.account.role as Role, c, identity);
}

export async function unlock(passphrase: string): Promise<UnlockedSession> {
  const c = await theClient();
  const identity = await c.unlock(passphrase);
  const role = (await c.profile.settings()).role as Role;
  return wrap(role, c, identity);
}

/**
 * Ends the session server-side; the gateway answers with Clear-Site-Data: the cache and
 * cookies, and with `forgetDevice` the origin's storage too. The sealed device state is
 * kept by a plain logout (the trust rule's pins must outlive it) and erased here as well when
 * forgetting the device, in case the server's header did not come (an ended session).
 */
export async function logout(forgetDevice = false): Promise<void> {
  session = null;
  store?.detach();
  const c = client;
  client = null;
  store = null;
  try {
    if (c !== null) await c.logout({ forgetDevice });
  } finally {
    if (forgetDevice) await forgetThisDevice();
  }
}

export async function sessions(): Promise<SessionInfo[]> {
  return (await (await theClient()).sessions()).map((s) => ({ id: s.sessionId, created_at: s.createdAt,
    current: s.current, ...(s.deviceName ? { user_agent: s.deviceName } : {}) }));
}

/** The step-up another session's end takes: the passphrase and, when enrolled, a code. */
export interface StepUp {
  passphrase: string;
  /** A TOTP code or, failing that, one of the recovery codes (told apart by shape). */
  code?: string;
}

export async function endSession(id: string, stepUp?: StepUp): Promise<void> {
  const code = stepUp?.code?.trim() ?? "";
  const factor = code === "" ? {} : /^\d{6}$/.test(code) ? { totpCode: code } : { recoveryCode: code };
  await (await theClient()).revokeSession(id, stepUp ? { passphrase: stepUp.passphrase, ...factor } : {});
}

export async function enableTotp(): Promise<TotpEnrolment> {
  const enrolment = await (await theClient()).enableTotp();
  return { uri: enrolment.otpauth_uri, secret: enrolment.secret };
}

export async function confirmTotp(code: string): Promise<string[]> {
  return (await theClient()).confirmTotp(code);
}

// --- patients and records -------------------------------------------------------------

function patientOf(p: { fileId: string; identity?: { name: string; birth_date: string; ins?: string } }): Patient {
  return { id: p.fileId, identity: p.identity ?? { name: p.fileId, birth_date: "" } };
}

export async function listPatients(search?: string): Promise<Patient[]> {
  return (await unlocked().patients.list(search)).map(patientOf);
}

export async function createPatient(identity: PatientIdentity): Promise<Patient> {
  return patientOf(await unlocked().patients.create(identity));
}

export async function getPatient(fileId: string): Promise<Patient> {
  return patientOf(await unlocked().patients.get(fileId));
}

export async function listRecords(fileId: string): Promise<RecordSummary[]> {
  return (await unlocked().records.list(fileId))
    .filter((info) => info.metadata.kind !== "patient-identity").map(summary);
}

export async function recordHistory(recordId: string): Promise<RecordSummary[]> {
  return (await unlocked().records.history(recordId)).map(summary);
}

export async function readNote(recordId: string, version?: number): Promise<NoteContent> {
  return (await unlocked().records.readJson(recordId, version)).value as NoteContent;
}

export async function createNote(fileId: string, kind: NoteKind, content: NoteContent
): Promise<RecordSummary> {
  const bytes = new TextEncoder().encode(JSON.stringify(content));
  return summary(await unlocked().records.create(fileId, scopeOf(kind), {
    title: `${TITLES[kind] ?? kind} ${formatFrenchDate(content.date)}`, kind, content_type: "application/json",
    size: bytes.length, created_at: new Date().toISOString(), date: content.date,
  }, bytes));
}

/** What an upload is doing: encrypting (bytes of the file read), then sending (bytes of the
 * ciphertext the server acknowledged). */
export type UploadPhase = "encrypting" | "sending";
export type UploadProgress = (done: number, total: number, phase: UploadPhase) => void;

/** The upload stopped: the connection kept failing after several resumed attempts. */
export class UploadFailed extends Error {
  constructor(cause: unknown) {
    super("the upload kept failing", { cause });
    this.name = "UploadFailed";
  }
}

/**
 * Encrypts a file in the worker (into a Blob spool), then uploads the ciphertext in
 * resumable pieces: a dropped connection resumes from what the server acknowledged instead
 * of starting over, and the sending progress counts only acknowledged bytes. The file is
 * read anew each time the SDK encrypts it: once, unless the server refused the write for its
 * key (the file's keys changed), when the SDK rotates or fetches the new key and encrypts again.
 */
export async function uploadDocument(fileId: string, kind: DocumentKind, file: File,
  progress: UploadProgress): Promise<RecordSummary> {
  const counted = (): ReadableStream<Uint8Array> => {
    let done = 0;
    progress(0, file.size, "encrypting");
    return file.stream().pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        done += chunk.length;
        progress(done, file.size, "encrypting");
        controller.enqueue(chunk);
      },
    }));
  };
  try {
    const info = await unlocked().records.create(fileId, scopeOf(kind), {
      title: file.name, kind, content_type: file.type, size: file.size,
      created_at: new Date().toISOString(), filename: file.name,
    }, counted, { onProgress: (acknowledged, total) => progress(acknowledged, total, "sending") });
    return summary(info);
  } catch (error) {
    if (error instanceof Unavailable) throw new UploadFailed(error);
    throw error;
  }
}

/** Downloads and decrypts a document as a stream (bounded memory). */
export async function downloadDocument(recordId: string, progress: Progress): Promise<Blob> {
  const { info, content } = await unlocked().records.openContent(recordId);
  let done = 0;
  const counted = content.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      done += chunk.length;
      progress(done, info.metadata.size);
      controller.enqueue(chunk);
    },
  }));
  // The browser keeps a large Blob on disk rather than in the page's memory.
  return new Response(counted, { headers: { "content-type": info.metadata.content_type } }).blob();
}

// --- sharing and audit ----------------------------------------------------------------

export async function sharingOverview(fileId: string): Promise<SharingOverview> {
  const overview = await unlocked().sharing.overview(fileId);
  return {
    members: overview.grants.filter((g) => g.status === "active").map((g) => ({
      grant_id: g.grantId, account_id: g.granteeId, relationship: g.relationship, scopes: g.scopes,
    })),
    pending: overview.invitations
      .filter((i) => i.status === "pending")
      .map((i) => ({ invitation_id: i.invitationId, relationship: i.relationship, expires_at: i.expiresAt ?? "" })),
  };
}

/** `validUntil`: ISO date the access ends (required by the server for a parent). */
export async function invite(fileId: string, relationship: Relationship, validUntil?: string
): Promise<Invitation> {
  const invited = await unlocked().sharing.invite(fileId, relationship,
    validUntil ? { validUntil: new Date(`${validUntil}T00:00:00Z`) } : {});
  return { invitation_id: invited.invitationId, code: invited.code };
}

export async function grant(fileId: string, accountId: string, fingerprint: string,
  relationship: Relationship): Promise<Member> {
  const c = await theClient();
  const verification = await c.verifyAccount(accountId);
  const digits = (text: string): string => text.replace(/[^0-9a-f]/gi, "").toLowerCase();
  if (digits(verification.fingerprint) !== digits(fingerprint)) {
    throw new Error("l'empreinte ne correspond pas à celle du compte");
  }
  await c.pin(accountId, verification.fingerprint);
  const made = await unlocked().sharing.grant(fileId, accountId, relationship);
  return { grant_id: made.grantId, account_id: made.granteeId, relationship: made.relationship,
    scopes: made.scopes };
}

export async function revoke(grantOrInvitationId: string): Promise<void> {
  await unlocked().sharing.revoke(grantOrInvitationId);
}

/** Redeems an invitation code on this device (the code never leaves it). */
export async function acceptInvitation(code: string): Promise<{ fileId: string }> {
  const accepted = await unlocked().sharing.accept(code);
  return { fileId: accepted.fileId };
}

/** Files shared with the signed-in patient or representative. */
export async function sharedFiles(): Promise<{ fileId: string; label: string }[]> {
  return (await unlocked().patients.list()).map((p) => ({
    fileId: p.fileId, label: p.identity?.name ?? p.fileId,
  }));
}

export async function leaveShare(fileId: string): Promise<void> {
  await unlocked().sharing.leave(fileId);
}

export async function auditTimeline(fileId: string): Promise<AuditTimeline> {
  const trail = await unlocked().audit(fileId);
  return {
    verified: trail.verified,
    events: trail.events.map((e) => ({ at: String(e.time), actor: String(e.actor),
      action: String(e.action), outcome: String(e.outcome) })),
  };
}
