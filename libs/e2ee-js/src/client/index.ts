/**
 * Écrin's SDK for browsers and Node: the async client over `fetch`, all cryptography in the
 * protocol library next to it. Node-only helpers (a profile folder, file spools and
 * downloads) are in `./node.ts`.
 */

export type * from "./api-types.ts";
export { collectAudit, type AuditChain, type AuditTrail } from "./audit.ts";
export { EcrinClient, ROLES, type ClientOptions, type LoginOptions, type LoginResult, type Role, type SignupResult, type Verification } from "./client.ts";
export { memorySpool, type Spool } from "./content.ts";
export * from "./errors.ts";
export type { KdfProfile } from "./kdf-policy.ts";
export { IDENTITY_KIND, type PatientIdentity, type RecordMetadata } from "./metadata.ts";
export { Patients, searchTokens, type Patient } from "./patients.ts";
export { Records, type Content, type RecordInfo, type Unreadable } from "./records.ts";
export { openSession, type Session } from "./session.ts";
export { Sharing, NotVerified, RELATIONSHIPS, type Accepted, type GrantView, type Invited } from "./sharing.ts";
export type { InvitationView, MemberView, SharingOverview, TrustStatus } from "./sharing-overview.ts";
export type { SecondFactor, SessionView } from "./security.ts";
export { Rotations, type Rotated } from "./rotation.ts";
export { inlineSlowCrypto, offThreadSlowCrypto, type SlowCrypto } from "./slow.ts";
export { MemoryStore, Profile, type ClientStore, type ProfileSettings, type StoredTokens } from "./state.ts";
export { GatewayTransport, type Fetch } from "./transport.ts";
export { Trust, TrustStore, Untrusted, type Why } from "./trust.ts";
export { MAX_PIECE_BYTES, PIECE_BYTES, QUICK_PIECE_MS, resumableUpload, ROW_BYTES, type UploadOptions, type UploadProgress, UploadProtocolError } from "./upload.ts";
