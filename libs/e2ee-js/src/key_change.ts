/**
 * Key-change statements (mirrors `ecrin_e2ee.key_change`): the only way an account's
 * public identity may be replaced. Signed by the **old** identity's Ed25519 key over
 * `canonical("ecrin/key-change/v1", account_id(16), old_fingerprint(32),
 * new_fingerprint(32), changed_at(u64be))`. A statement never makes the new key trusted by
 * itself: the peer still compares safety numbers again.
 */

import { now } from "./_seams.ts";
import {
  b64d, b64e, canonical, equalBytes, field, fromTimestamp, parseUuid, timestamp, u64, uuidBytes, type Uuid,
} from "./_wire.ts";
import { FormatError, IdentityMismatchError } from "./errors.ts";
import { IdentityKeys, PublicIdentity } from "./identity.ts";
import { verifySignature } from "./kdf.ts";

const LABEL = "ecrin/key-change/v1";
/** 9999-12-31T23:59:59Z, the last second a Python datetime holds. */
const LAST_SECOND = 253_402_300_799;

function statement(accountId: Uuid, oldFp: Uint8Array, newFp: Uint8Array, changedAt: Date): Uint8Array {
  return canonical(LABEL, uuidBytes(accountId), oldFp, newFp, u64(timestamp(changedAt)));
}

export interface KeyChangeJson {
  format: number;
  account_id: string;
  old_fingerprint: string;
  new_fingerprint: string;
  changed_at: number;
  signature: string;
}

/** "Account X replaces the identity with fingerprint A by the one with fingerprint B",
 * signed by A's key. */
export class KeyChange {
  static readonly FORMAT_VERSION = 1;
  readonly accountId: Uuid;
  readonly oldFingerprint: Uint8Array;
  readonly newFingerprint: Uint8Array;
  readonly changedAt: Date;
  readonly signature: Uint8Array;

  constructor(accountId: Uuid, oldFingerprint: Uint8Array, newFingerprint: Uint8Array, changedAt: Date, signature: Uint8Array) {
    if (oldFingerprint.length !== 32 || newFingerprint.length !== 32) throw new FormatError("fingerprints must be 32 bytes");
    if (signature.length !== 64) throw new FormatError("signature must be 64 bytes");
    if (!(changedAt instanceof Date) || timestamp(changedAt) <= 0) {
      throw new FormatError("changed_at must be a time after 1970");
    }
    if (equalBytes(oldFingerprint, newFingerprint)) throw new FormatError("a key change names two different identities");
    this.accountId = parseUuid(accountId);
    this.oldFingerprint = oldFingerprint;
    this.newFingerprint = newFingerprint;
    this.changedAt = changedAt;
    this.signature = signature;
    Object.freeze(this);
  }

  signedBytes(): Uint8Array {
    return statement(this.accountId, this.oldFingerprint, this.newFingerprint, this.changedAt);
  }

  /** The statement that `old` hands the account over to `newIdentity` (time: now). */
  static sign(old: IdentityKeys, newIdentity: PublicIdentity): KeyChange {
    if (newIdentity.accountId !== old.accountId) throw new RangeError("a key change stays within one account");
    const changedAt = fromTimestamp(Math.max(1, timestamp(now())))!;
    const oldFp = old.publicIdentity().fingerprint();
    const signature = old.sign(statement(old.accountId, oldFp, newIdentity.fingerprint(), changedAt));
    return new KeyChange(old.accountId, oldFp, newIdentity.fingerprint(), changedAt, signature);
  }

  /** Check that `old` signed the change of this account from `old` to `newIdentity`. */
  verify(old: PublicIdentity, newIdentity: PublicIdentity): void {
    const ok = old.accountId === this.accountId && newIdentity.accountId === this.accountId
      && equalBytes(old.fingerprint(), this.oldFingerprint)
      && equalBytes(newIdentity.fingerprint(), this.newFingerprint)
      && verifySignature(old.signPublic, this.signedBytes(), this.signature);
    if (!ok) throw new IdentityMismatchError("the key change is not signed by the old identity");
  }

  toJSON(): KeyChangeJson {
    return {
      format: KeyChange.FORMAT_VERSION,
      account_id: this.accountId,
      old_fingerprint: b64e(this.oldFingerprint),
      new_fingerprint: b64e(this.newFingerprint),
      changed_at: timestamp(this.changedAt),
      signature: b64e(this.signature),
    };
  }

  /** Parse (no verification: that needs both identities). */
  static fromJSON(obj: unknown): KeyChange {
    if (field(obj, "format") !== KeyChange.FORMAT_VERSION) throw new FormatError("unsupported key change format");
    const changedAt = field(obj, "changed_at");
    if (typeof changedAt !== "number" || !Number.isInteger(changedAt) || changedAt <= 0 || changedAt > LAST_SECOND) {
      throw new FormatError("changed_at must be a positive integer");
    }
    return new KeyChange(parseUuid(field(obj, "account_id")),
      b64d(field(obj, "old_fingerprint"), { size: 32, what: "old_fingerprint" }),
      b64d(field(obj, "new_fingerprint"), { size: 32, what: "new_fingerprint" }),
      fromTimestamp(changedAt)!,
      b64d(field(obj, "signature"), { size: 64, what: "signature" }));
  }
}

/** True when `history` (oldest first: each replaced identity with the statement that
 * replaced it) leads from the identity with fingerprint `pinned` to `current`, every step
 * signed by the key it replaced. */
export function keyChangeLinks(pinned: Uint8Array, history: readonly [PublicIdentity, KeyChange][],
  current: PublicIdentity): boolean {
  const chain = [...history.map(([previous]) => previous), current];
  let start = -1;
  for (let i = 0; i < chain.length - 1; i++) if (equalBytes(chain[i]!.fingerprint(), pinned)) start = i;
  if (start < 0) return false;
  try {
    for (let i = start; i < history.length; i++) history[i]![1].verify(chain[i]!, chain[i + 1]!);
  } catch (e) {
    if (e instanceof IdentityMismatchError) return false;
    throw e;
  }
  return true;
}
