/**
 * Re-encryption grants, scope rotation and record re-keying (mirrors `ecrin_e2ee.grants`).
 *
 * - {@link grantScopeKeys}: the granter's device seals the scope keys it holds to a grantee
 *   identity it has verified, and signs each entry. Servers store them; they cannot make one.
 * - {@link rotateScope}: after a revocation or an expiry, a fresh scope key version sealed
 *   to each remaining member.
 * - {@link rekeyRecordHeader}: re-wraps a record's DEK under the new version without
 *   touching content or metadata; the author's signature over the core is kept, the
 *   re-keying member signs the new wrap.
 */

import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { KeyringEntry, ScopeKey, sealEntry, type Permission, type Relationship } from "./keyring.ts";
import { RecordHeader, unwrapDek } from "./record_header.ts";

/** What a grant says besides the key: relationship, permissions, validity window. */
export interface GrantTerms {
  relationship: Relationship;
  permissions: Iterable<Permission>;
  validFrom?: Date | null;
  validUntil?: Date | null;
}

/** A keyring member: a verified identity and the terms of its grant. */
export interface Member {
  identity: PublicIdentity;
  terms: GrantTerms;
}

/** A new scope key version and its entries for every remaining member. */
export interface Rotation {
  scopeKey: ScopeKey;
  entries: KeyringEntry[];
}

/**
 * Seal each scope key to `grantee` and sign as `granter`. The grantee's self-signature is
 * always checked; pass the fingerprint the granter pinned to check that too (throws
 * IdentityMismatchError).
 */
export function grantScopeKeys(scopeKeys: Iterable<ScopeKey>, grantee: PublicIdentity, terms: GrantTerms,
  options: { granter: IdentityKeys; pinnedFingerprint?: Uint8Array | string | null }): KeyringEntry[] {
  grantee.verify();
  if (options.pinnedFingerprint !== undefined && options.pinnedFingerprint !== null) {
    grantee.verifyFingerprint(options.pinnedFingerprint);
  }
  return [...scopeKeys].map((key) => sealEntry(key, grantee, {
    relationship: terms.relationship,
    permissions: terms.permissions,
    granter: options.granter,
    validFrom: terms.validFrom ?? null,
    validUntil: terms.validUntil ?? null,
  }));
}

/** Make version `current.version + 1` and seal it to every member (include the granter). */
export function rotateScope(current: ScopeKey, members: readonly Member[], options: { granter: IdentityKeys }): Rotation {
  const scopeKey = ScopeKey.generate(current.fileId, current.scope, current.version + 1);
  const entries = members.flatMap((m) => grantScopeKeys([scopeKey], m.identity, m.terms, options));
  return { scopeKey, entries };
}

/** Re-wrap the DEK under `newScopeKey` (checking it against the author's commitment). */
export function rekeyRecordHeader(header: RecordHeader, oldScopeKey: ScopeKey, newScopeKey: ScopeKey,
  signer: IdentityKeys): RecordHeader {
  if (newScopeKey.version <= oldScopeKey.version) throw new RangeError("the new scope key must be a later version");
  const dek = unwrapDek(header, oldScopeKey);
  try {
    return header.withWrap(newScopeKey, dek, signer);
  } finally {
    dek.fill(0);
  }
}
