/**
 * @ecrin/e2ee: Écrin's client-side cryptography for browsers and Node, byte-compatible
 * with the Python `ecrin_e2ee` (`docs/protocol.md`), on libsodium-wrappers-sumo only.
 *
 * Importing this module waits for libsodium (top-level await); every function is then
 * synchronous. Slow ones (`deriveAccountKeys`, `createAccount`, `createInvitation`,
 * `redeemInvitation`: Argon2id) block: in a browser use the off-thread variants of
 * `offthread.ts`, which run Argon2id and large-file encryption in a Web Worker.
 */

export { E2EEError, DecryptionError, FormatError, IdentityMismatchError, InvalidCode } from "./errors.ts";
export {
  b64d, b64e, canonical, parseUuid, pythonJson, randomUuid, uuidBytes, uuidFromBytes, type Json, type Uuid,
} from "./_wire.ts";
export type { ByteSource } from "./_streams.ts";
export {
  AccountKeys, KdfParams, KeyEncryptionKey, SigningKey, accountKeysFromMaster, argon2id,
  deriveAccountKeys, newSalt, passphraseBytes, verifySignature,
} from "./kdf.ts";
export { RecoveryKey } from "./recovery.ts";
export { IdentityKeys, PublicIdentity, type PublicIdentityJson } from "./identity.ts";
export { LOCAL_PURPOSES, localOpen, localSeal } from "./local_seal.ts";
export {
  WrappedIdentity, createAccount, createAccountWithKeys, unwrapIdentity, wrapIdentity,
  type AccountSetup, type Purpose, type WrappedIdentityJson,
} from "./account.ts";
export {
  KeyringEntry, PERMISSIONS, RELATIONSHIPS, SCOPES, ScopeKey, openEntry, parseScope, scopeCode,
  scopeFromCode, sealEntry, type KeyringEntryJson, type Permission, type Relationship, type Scope,
} from "./keyring.ts";
export { RecordHeader, dekCommitment, unwrapDek, type RecordHeaderJson } from "./record_header.ts";
export {
  CHUNK_OVERHEAD, CHUNK_SIZE, EncryptedRecord, RecordDecryptor, RecordEncryptor, chunkCount,
  encryptRecord, openRecord, paddedContentLength, type EncryptedRecordJson, type Metadata,
  type OpenedRecord, type RecordDecryptorOptions, type RecordEncryptorOptions,
} from "./records.ts";
export { grantScopeKeys, rekeyRecordHeader, rotateScope, type GrantTerms, type Member, type Rotation } from "./grants.ts";
export {
  InvitationCode, InvitationPayload, InvitationVerifier, checkRedemption, createInvitation,
  draftInvitation, openInvitation, payloadKey, redeemInvitation, redeemable, redemptionProof,
  sealInvitation, type CreatedInvitation, type InvitationPayloadJson, type InvitationVerifierJson,
  type RedeemedInvitation,
} from "./invitation.ts";
export { SearchKey, normaliseIns, normaliseName } from "./blind_index.ts";
export { AuditHead, AuditSigningKey, SignedAuditHead, type AuditHeadJson, type SignedAuditHeadJson } from "./audit_head.ts";
export {
  AuditChainError, eventHash, verifyChain, verifyServedChain, type AuditEvent, type AuditRefusal,
  type VerifiedChain,
} from "./audit_chain.ts";
export { KeyChange, keyChangeLinks, type KeyChangeJson } from "./key_change.ts";
export { padme } from "./padding.ts";
export { OffThread, type OffThreadDecryptor, type OffThreadEncryptor, type OffThreadOptions } from "./offthread.ts";
