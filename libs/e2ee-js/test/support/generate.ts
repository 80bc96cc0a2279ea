/**
 * A TypeScript port of the vector generator `tests/e2ee/vectors.py`: run through the same
 * deterministic seams, each builder must reproduce the committed JSON file byte for byte.
 * That proves the TypeScript side *writes* every format exactly as Python does.
 */

import { sha256 } from "../../src/_sodium.ts";
import { b64e, pythonJson, toHex, utf8 } from "../../src/_wire.ts";
import {
  AuditSigningKey, IdentityKeys, KdfParams, KeyChange, RecoveryKey, ScopeKey, SearchKey, createInvitation,
  deriveAccountKeys, encryptRecord, grantScopeKeys, normaliseIns, normaliseName, padme, redeemInvitation,
  rekeyRecordHeader, wrapIdentity,
} from "../../src/index.ts";
import { randomBytes } from "../../src/_seams.ts";
import { GENESIS } from "../../src/audit_head.ts";
import { eventHash } from "../../src/audit_chain.ts";
import { localKey, localSeal } from "../../src/local_seal.ts";
import { FIXED_NOW, deterministic, seededRandom } from "./seeded.ts";

export const FILE_ID = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
export const ALICE = "a11ce000-0000-4000-8000-000000000001";
export const BOB = "b0b00000-0000-4000-8000-000000000002";
export const RECORD_ID = "5ec0d000-0000-4000-8000-000000000003";

/** Vector content: byte i is `i % 251`. */
export function contentRule(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i % 251;
  return out;
}

function identities(): [IdentityKeys, IdentityKeys] {
  return deterministic("identities", () => [IdentityKeys.generate(ALICE), IdentityKeys.generate(BOB)]);
}

function kdf(): unknown {
  const params = KdfParams.insecureForTests();
  const cases = [["correct horse battery staple", "s1"], ["Kiné ésthète ①", "s2"]].map(([passphrase, seed]) => {
    const salt = seededRandom(seed!)(16);
    const keys = deriveAccountKeys(passphrase!, salt, params);
    return {
      passphrase, salt: b64e(salt), params: params.toJSON(),
      login_public_key: b64e(keys.loginPublicKey), kek: b64e(keys.kek.toBytes()),
    };
  });
  return { description: "Argon2id master secret, BLAKE2b subkeys", cases };
}

function identity(): unknown {
  const [alice, bob] = identities();
  const pa = alice.publicIdentity(), pb = bob.publicIdentity();
  return {
    description: "identity keys x25519(32)||ed25519 seed(32); self-signed public identity",
    cases: [[alice, pa], [bob, pb]].map(([k, p]) => ({
      identity_keys: b64e((k as IdentityKeys).toBytes()),
      public_identity: (p as ReturnType<IdentityKeys["publicIdentity"]>).toJSON(),
      fingerprint: toHex((p as ReturnType<IdentityKeys["publicIdentity"]>).fingerprint()),
    })),
    safety_number: pa.safetyNumber(pb),
  };
}

function recovery(): unknown {
  const keys = deterministic("recovery", () => [RecoveryKey.generate(), RecoveryKey.generate(), RecoveryKey.generate()]);
  keys.push(new RecoveryKey(new Uint8Array(32)), new RecoveryKey(new Uint8Array(32).fill(0xff)));
  return {
    cases: keys.map((k) => ({ key: b64e(k.toBytes()), text: k.toText(), login_public_key: b64e(k.loginPublicKey) })),
  };
}

function wrappedIdentity(): unknown {
  const [alice] = identities();
  return deterministic("wrapped-identity", () => {
    const salt = randomBytes(16);
    const kek = deriveAccountKeys("passphrase of alice", salt, KdfParams.insecureForTests()).kek;
    const recoveryKey = RecoveryKey.generate();
    return {
      identity_keys: b64e(alice.toBytes()),
      kek: b64e(kek.toBytes()),
      recovery_key: recoveryKey.toText(),
      wrapped_by_passphrase: wrapIdentity(alice, kek).toJSON(),
      wrapped_by_recovery: wrapIdentity(alice, recoveryKey).toJSON(),
    };
  });
}

function keyringEntry(): unknown {
  const [alice, bob] = identities();
  const [scopeKey, entry] = deterministic("keyring", () => {
    const key = ScopeKey.generate(FILE_ID, "clinical", 3);
    const [e] = grantScopeKeys([key], bob.publicIdentity(), {
      relationship: "replacement", permissions: ["read", "append"],
      validFrom: new Date(Date.UTC(2026, 1, 1)), validUntil: new Date(Date.UTC(2026, 3, 1)),
    }, { granter: alice });
    return [key, e!] as const;
  });
  return {
    granter_identity: alice.publicIdentity().toJSON(),
    member_identity_keys: b64e(bob.toBytes()),
    member_id: BOB,
    scope_key: b64e(scopeKey.toBytes()),
    open_at: "2026-03-01T09:30:00+00:00",
    entry: entry.toJSON(),
    signed_bytes: b64e(entry.signedBytes()),
  };
}

export const RECORD_METADATA = {
  title: "Bilan initial — genou gauche", kind: "bilan", content_type: "text/plain", created: "2026-03-01",
};

function record(): unknown {
  const [alice, bob] = identities();
  const cases = [0, 300, 65_636].map((n) => deterministic(`record-${n}`, () => {
    const v1 = ScopeKey.generate(FILE_ID, "clinical", 1);
    const v2 = ScopeKey.generate(FILE_ID, "clinical", 2);
    const rec = encryptRecord(contentRule(n), RECORD_METADATA, {
      fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 1, scopeKey: v1, author: alice,
    });
    const rekeyed = rekeyRecordHeader(rec.header, v1, v2, bob);
    return {
      content_length: n,
      content_rule: "byte i = i % 251",
      metadata: RECORD_METADATA,
      scope_key_v1: b64e(v1.toBytes()),
      scope_key_v2: b64e(v2.toBytes()),
      record: rec.toJSON(),
      rekeyed_header_by_member: b64e(rekeyed.toBytes()),
    };
  }));
  return {
    author_identity: alice.publicIdentity().toJSON(),
    member_identity: bob.publicIdentity().toJSON(),
    cases,
  };
}

function invitation(): unknown {
  const [alice, bob] = identities();
  const [keys, created] = deterministic("invitation", () => {
    const k = [ScopeKey.generate(FILE_ID, "shared", 1), ScopeKey.generate(FILE_ID, "administrative", 2)];
    return [k, createInvitation(k, { inviter: alice, params: KdfParams.insecureForTests() })] as const;
  });
  const proof = redeemInvitation(created.code, created.payload, bob.publicIdentity()).proof;
  return {
    inviter_identity_keys: b64e(alice.toBytes()),
    inviter_id: ALICE,
    inviter_fingerprint: b64e(alice.publicIdentity().fingerprint()),
    redeemer_identity: bob.publicIdentity().toJSON(),
    verifier: created.verifier.toJSON(),
    redemption_proof: b64e(proof),
    code: created.code.toText(),
    scope_keys: keys.map((k) => ({ scope: k.scope, version: k.version, key: b64e(k.toBytes()) })),
    payload: created.payload.toJSON(),
  };
}

function keyChange(): unknown {
  const [alice] = identities();
  return deterministic("key-change", () => {
    const next = IdentityKeys.generate(ALICE);
    const change = KeyChange.sign(alice, next.publicIdentity());
    return {
      old_identity: alice.publicIdentity().toJSON(),
      new_identity: next.publicIdentity().toJSON(),
      new_identity_keys: b64e(next.toBytes()),
      statement: change.toJSON(),
      signed_bytes: b64e(change.signedBytes()),
    };
  });
}

function blindIndex(): unknown {
  const [alice] = identities();
  const key = SearchKey.forOwner(alice);
  const names = ["Jean-Éloïse  D'Arc", "JEAN ELOISE D ARC", "Müller", "Ñúñez-García", "Øster"];
  const ins = ["1 84 12 76 451 089 46", "2840276451089 30", "1 84 12 2A 451 089 33"];
  return {
    owner_identity_keys: b64e(alice.toBytes()),
    search_key: b64e(key.toBytes()),
    names: names.map((n) => ({ input: n, normalised: normaliseName(n), token: key.nameToken(n) })),
    ins: ins.map((i) => ({ input: i, normalised: normaliseIns(i), token: key.insToken(i) })),
  };
}

function padmeVectors(): unknown {
  const lengths = [0, 1, 2, 3, 9, 100, 255, 256, 1000, 4097, 65536, 65537, 10 ** 6, 268435456, 268435457];
  return { cases: lengths.map((n) => [n, padme(n)]) };
}

function auditHead(): unknown {
  const [key, heads] = deterministic("audit-head", () => {
    const k = AuditSigningKey.generate();
    const h = sha256();
    h.update(utf8("event 7"));
    return [k, [
      k.sign({ service: "kms", chain: `file:${FILE_ID}`, seq: 0, hash: "0".repeat(64) }),
      k.sign({ service: "sharing", chain: `file:${FILE_ID}`, seq: 7, hash: toHex(h.digest()) }),
    ]] as const;
  });
  return {
    description: "Ed25519 over canonical(ecrin/audit-head/v1, service, chain, u64 seq, hash(32), u64 time)",
    signing_key: b64e(key.toBytes()),
    public_key: b64e(key.publicKey),
    cases: heads.map((h) => ({ signed_head: h.toJSON(), signed_bytes: b64e(h.head.signedBytes()) })),
  };
}

function auditChain(): unknown {
  const chain = `file:${FILE_ID}:clinical`;
  const rows = [
    [ALICE, "record.write", `record:${RECORD_ID}`, "ok"],
    [BOB, "record.read", "Séance — genou 𝄞 €\u007f\t\"q\"", "ok"],
    [BOB, "record.delete", `record:${RECORD_ID}`, "denied"],
  ];
  const events: Record<string, unknown>[] = [];
  let previous = GENESIS;
  rows.forEach(([actor, action, target, outcome], i) => {
    const seq = i + 1;
    const event: Record<string, unknown> = {
      chain, seq, time: `2026-03-01T09:3${seq}:00.12345${seq}+00:00`, actor, action, target, outcome,
      request_id: `req-${String(seq).padStart(4, "0")}`, service: "records-api", prev_hash: previous,
    };
    event["hash"] = previous = eventHash(event);
    events.push(event);
  });
  const [key, signed] = deterministic("audit-chain", () => {
    const k = AuditSigningKey.generate();
    return [k, k.sign({ service: "records-api", chain, seq: events.length, hash: previous })] as const;
  });
  const edited = events.map((e) => ({ ...e }));
  edited[1]!["target"] = "Seance";
  return {
    description: "SHA-256 of json.dumps(fields, sort_keys=True, separators=(',', ':')), " +
      "chained from 64 zeros, and the signed head of the last event",
    served: { service: "records-api", chain, events, ...signed.toJSON(), audit_key: b64e(key.publicKey) },
    broken: [
      { what: "an event's target edited", events: edited, broken_at: 2 },
      { what: "an event dropped", events: [events[0], events[2]], broken_at: 2 },
      { what: "two events swapped", events: [events[1], events[0], events[2]], broken_at: 1 },
    ],
  };
}

function nameNormalisation(): unknown {
  const [alice] = identities();
  const key = SearchKey.forOwner(alice);
  const names = ["Straße", "STRASSE", "ΟΔΥΣΣΕΑΣ", "Οδυσσέας", "İstanbul", "ﬁlomène", "Œuvre Æsop",
    "Łukasz Đoković", "O’Brien", "Marie\u2010Thérèse", "Ｊｅａｎ", "  d'Artagnan._  ", "Nguyễn Thị Ánh", "Ærøskøbing"];
  return {
    search_key: b64e(key.toBytes()),
    cases: names.map((n) => ({ input: n, normalised: normaliseName(n), token: key.nameToken(n) })),
  };
}

export const TRICKY_METADATA = {
  title: "Bilan « initial » — \"genou\"\n\tgauche 🦵", "9": 9, "10": [10, null], Z: true,
  "é": { b: 0.5, a: -1, "𝄞": "clef" }, "\u2028": "line sep", created: "2026-03-01",
};

function recordMetadata(): unknown {
  const [alice] = identities();
  const [key, rec] = deterministic("record-metadata", () => {
    const k = ScopeKey.generate(FILE_ID, "shared", 1);
    return [k, encryptRecord(contentRule(1000), TRICKY_METADATA, {
      fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 2, scopeKey: k, author: alice,
    })] as const;
  });
  return {
    author_identity: alice.publicIdentity().toJSON(),
    metadata: TRICKY_METADATA,
    scope_key: b64e(key.toBytes()),
    content_length: 1000,
    record: rec.toJSON(),
  };
}

function localSealVectors(): unknown {
  const [alice] = identities();
  const plaintext = utf8('{"b0b00000-0000-4000-8000-000000000002": "Dr Martin Kiné"}');
  const sealed = deterministic("local-seal", () => localSeal(alice, "contacts", plaintext));
  return {
    account_id: ALICE,
    identity_keys: b64e(alice.toBytes()),
    purpose: "contacts",
    subkey_id: 1,
    key: b64e(localKey(alice, "contacts")),
    plaintext: b64e(plaintext),
    sealed,
  };
}

export const BUILDERS: Record<string, () => unknown> = {
  kdf, identity, recovery, wrapped_identity: wrappedIdentity, keyring_entry: keyringEntry, record,
  invitation, blind_index: blindIndex, padme: padmeVectors, key_change: keyChange, audit_head: auditHead,
  audit_chain: auditChain, name_normalisation: nameNormalisation, record_metadata: recordMetadata,
  local_seal: localSealVectors,
};

/** `json.dumps(..., indent=1, sort_keys=True, ensure_ascii=False) + "\n"`, as Python writes. */
export function render(name: string): string {
  const build = BUILDERS[name];
  if (!build) throw new Error(`no TypeScript builder for ${name}.json`);
  return pythonJson(build(), { indent: 1 }) + "\n";
}

export { FIXED_NOW };
