/**
 * The crypto core as the SDK uses it: every primitive comes from the protocol library
 * (`libs/e2ee-js/src/*.ts`), nothing cryptographic is written in `src/client/`.
 */

export { createAccountWithKeys, unwrapIdentity, WrappedIdentity, wrapIdentity } from "../account.ts";
export { AuditChainError, verifyServedChain } from "../audit_chain.ts";
export { SignedAuditHead } from "../audit_head.ts";
export { normaliseIns, normaliseName, SearchKey } from "../blind_index.ts";
export { DecryptionError, FormatError, IdentityMismatchError, InvalidCode } from "../errors.ts";
export { grantScopeKeys, rekeyRecordHeader, rotateScope } from "../grants.ts";
export type { GrantTerms, Member } from "../grants.ts";
export { IdentityKeys, PublicIdentity } from "../identity.ts";
export {
  checkRedemption, draftInvitation, InvitationCode, InvitationPayload, InvitationVerifier, openInvitation, payloadKey,
  redeemable, sealInvitation,
} from "../invitation.ts";
export type { CreatedInvitation, RedeemedInvitation } from "../invitation.ts";
export {
  AccountKeys, accountKeysFromMaster, argon2id, KdfParams, KeyEncryptionKey, newSalt, passphraseBytes,
} from "../kdf.ts";
export { KeyChange, keyChangeLinks } from "../key_change.ts";
export { KeyringEntry, openEntry, ScopeKey, sealEntry } from "../keyring.ts";
export type { Permission, Relationship, Scope } from "../keyring.ts";
export { RecordHeader } from "../record_header.ts";
export { CHUNK_SIZE, RecordDecryptor, RecordEncryptor } from "../records.ts";
export { RecoveryKey } from "../recovery.ts";
export { OffThread, type OffThreadOptions } from "../offthread.ts";
export { iterate, type ByteSource } from "../_streams.ts";
