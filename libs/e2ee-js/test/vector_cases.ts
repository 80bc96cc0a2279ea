/**
 * Every known-answer vector of `tests/e2ee/data/` checked in TypeScript, both ways:
 * - write: the TypeScript port of the generator reproduces each file byte for byte;
 * - read: each vector opens and verifies through the public API, as test_vectors.py does;
 * - tamper: a flipped bit or a swapped field of each vector is rejected, with the one
 *   opaque DecryptionError where Python raises it.
 *
 * Plain functions, so that the same cases run under `node --test` and in headless
 * Chromium (tests/e2ee_js/test_browser.py).
 */

import { b64d, b64e, toHex, utf8 } from "../src/_wire.ts";
import {
  AuditSigningKey, DecryptionError, EncryptedRecord, FormatError, IdentityKeys, IdentityMismatchError,
  InvalidCode, InvitationCode, InvitationPayload, InvitationVerifier, KdfParams, KeyChange,
  KeyEncryptionKey, KeyringEntry, PublicIdentity, RecordDecryptor, RecordHeader, RecoveryKey, ScopeKey,
  AuditChainError, SearchKey, SignedAuditHead, verifyChain, verifyServedChain, WrappedIdentity, checkRedemption, deriveAccountKeys, keyChangeLinks,
  normaliseIns, normaliseName, openEntry, openRecord, padme, redeemInvitation, unwrapIdentity,
} from "../src/index.ts";
import { bytesEq, eq, flip, jsonEq, ok, throws } from "./support/check.ts";
import { loadVector, vectorFiles } from "./support/data.ts";
import { BUILDERS, contentRule, render } from "./support/generate.ts";
import { localKey, localOpen } from "../src/local_seal.ts";

export type Case = [name: string, run: () => void | Promise<void>];
export const cases: Case[] = [];
const test = (name: string, run: () => void | Promise<void>): void => {
  cases.push([name, run]);
};

// --- write: regeneration is byte for byte --------------------------------------------

test("every vector file has a TypeScript builder", () => {
  const files = Object.keys(vectorFiles());
  ok(files.length >= 11, `expected the vector files, found ${files.length}`);
  for (const name of files) ok(name in BUILDERS, `no TypeScript builder for ${name}.json`);
});

for (const name of Object.keys(vectorFiles())) {
  if (!(name in BUILDERS)) continue;
  test(`regenerates ${name}.json byte for byte`, () => {
    const expected = vectorFiles()[name]!;
    const actual = render(name);
    if (actual !== expected) {
      let i = 0;
      while (i < actual.length && actual[i] === expected[i]) i++;
      throw new Error(`${name}.json differs at character ${i}: ` +
        `${JSON.stringify(actual.slice(Math.max(0, i - 40), i + 40))} vs ${JSON.stringify(expected.slice(Math.max(0, i - 40), i + 40))}`);
    }
  });
}

// --- read: every vector opens through the API -----------------------------------------

test("kdf opens", () => {
  for (const c of loadVector("kdf").cases) {
    const keys = deriveAccountKeys(c.passphrase, b64d(c.salt), KdfParams.fromJSON(c.params));
    bytesEq(keys.loginPublicKey, b64d(c.login_public_key), "login public key");
    ok(keys.kek.equals(new KeyEncryptionKey(b64d(c.kek))), "kek");
  }
});

test("identity opens, fingerprints and safety number", () => {
  const data = loadVector("identity");
  const pubs = data.cases.map((c: any) => {
    const pub = PublicIdentity.fromJSON(c.public_identity);
    const keys = IdentityKeys.fromBytes(pub.accountId, b64d(c.identity_keys));
    ok(keys.publicIdentity().equals(pub), "public identity from keys");
    eq(toHex(pub.fingerprint()), c.fingerprint, "fingerprint");
    pub.verifyFingerprint(c.fingerprint);
    pub.verifyFingerprint(pub.fingerprintHex());
    return pub;
  });
  eq(pubs[0].safetyNumber(pubs[1]), data.safety_number, "safety number");
  eq(pubs[1].safetyNumber(pubs[0]), data.safety_number, "safety number (other side)");
});

test("identity tampered is refused", () => {
  const c = loadVector("identity").cases[0];
  const sig = b64d(c.public_identity.self_signature);
  throws(() => PublicIdentity.fromJSON({ ...c.public_identity, self_signature: b64e(flip(sig, 3)) }), IdentityMismatchError);
  throws(() => PublicIdentity.fromJSON({ ...c.public_identity, account_id: "b0b00000-0000-4000-8000-000000000002" }),
    IdentityMismatchError);
  const pub = PublicIdentity.fromJSON(c.public_identity);
  throws(() => pub.verifyFingerprint(flip(pub.fingerprint(), 0)), IdentityMismatchError);
  throws(() => PublicIdentity.fromJSON({ ...c.public_identity, enc_public: "AAAA" }), FormatError);
});

test("recovery keys parse, print and log in", () => {
  for (const c of loadVector("recovery").cases) {
    const key = RecoveryKey.fromText(c.text);
    bytesEq(key.toBytes(), b64d(c.key), "recovery key");
    eq(key.toText(), c.text, "text form");
    bytesEq(key.loginPublicKey, b64d(c.login_public_key), "login public key");
    eq(RecoveryKey.fromText(c.text.toLowerCase().replace(/0/g, "o")).toText(), c.text, "forgiving parse");
  }
  const text: string = loadVector("recovery").cases[0].text;
  const typo = text.slice(0, 10) + (text[10] === "A" ? "B" : "A") + text.slice(11);
  throws(() => RecoveryKey.fromText(typo), InvalidCode, "a typo");
  throws(() => RecoveryKey.fromText("rk-" + text.slice(9)), InvalidCode, "wrong prefix");
});

test("wrapped identity opens with the KEK and the recovery key", () => {
  const data = loadVector("wrapped_identity");
  const kek = new KeyEncryptionKey(b64d(data.kek));
  const rk = RecoveryKey.fromText(data.recovery_key);
  for (const [wrapped, key] of [[data.wrapped_by_passphrase, kek], [data.wrapped_by_recovery, rk]] as const) {
    const w = WrappedIdentity.fromJSON(wrapped);
    jsonEq(w.toJSON(), wrapped, "round trip");
    bytesEq(unwrapIdentity(w, key).toBytes(), b64d(data.identity_keys), "identity keys");
  }
});

test("wrapped identity tampered is refused opaquely", () => {
  const data = loadVector("wrapped_identity");
  const kek = new KeyEncryptionKey(b64d(data.kek));
  const w = WrappedIdentity.fromJSON(data.wrapped_by_passphrase);
  for (let i = 0; i < w.ciphertext.length; i += 7) {
    throws(() => unwrapIdentity(new WrappedIdentity(w.accountId, w.purpose, w.nonce, flip(w.ciphertext, i)), kek), DecryptionError);
  }
  throws(() => unwrapIdentity(new WrappedIdentity(w.accountId, w.purpose, flip(w.nonce, 0), w.ciphertext), kek), DecryptionError);
  throws(() => unwrapIdentity(new WrappedIdentity("b0b00000-0000-4000-8000-000000000002", w.purpose, w.nonce, w.ciphertext), kek),
    DecryptionError, "moved to another account");
  throws(() => unwrapIdentity(w, RecoveryKey.fromText(data.recovery_key)), DecryptionError, "wrong purpose");
  throws(() => unwrapIdentity(w, new KeyEncryptionKey(flip(kek.toBytes(), 0))), DecryptionError, "wrong key");
});

function keyringFixture() {
  const data = loadVector("keyring_entry");
  const entry = KeyringEntry.fromJSON(data.entry);
  const member = IdentityKeys.fromBytes(data.member_id, b64d(data.member_identity_keys));
  const granter = PublicIdentity.fromJSON(data.granter_identity);
  return { data, entry, member, granter, at: new Date(data.open_at) };
}

test("keyring entry opens", () => {
  const { data, entry, member, granter, at } = keyringFixture();
  bytesEq(entry.signedBytes(), b64d(data.signed_bytes), "signed bytes");
  jsonEq(entry.toJSON(), data.entry, "round trip");
  const key = openEntry(entry, member, granter, { at });
  bytesEq(key.toBytes(), b64d(data.scope_key), "scope key");
  eq(key.version, entry.version, "version");
  eq(key.scope, "clinical", "scope");
});

test("keyring entry tampered, expired or misdirected is refused opaquely", () => {
  const { data, entry, member, granter, at } = keyringFixture();
  const sealed = entry.sealedKey;
  for (let i = 0; i < sealed.length; i += 9) {
    throws(() => openEntry(KeyringEntry.fromJSON({ ...data.entry, sealed_key: b64e(flip(sealed, i)) }), member, granter, { at }),
      DecryptionError, `sealed byte ${i}`);
  }
  for (const [fieldName, value] of [
    ["version", 4], ["scope", "shared"], ["relationship", "owner"], ["permissions", ["append", "read"].slice(1)],
    ["valid_until", 1775001601], ["file_id", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f1"],
    ["signature", b64e(flip(entry.signature, 5))],
  ] as const) {
    throws(() => openEntry(KeyringEntry.fromJSON({ ...data.entry, [fieldName]: value }), member, granter, { at }),
      DecryptionError, `changed ${fieldName}`);
  }
  throws(() => openEntry(entry, member, granter, { at: new Date(Date.UTC(2026, 3, 1)) }), DecryptionError, "expired");
  throws(() => openEntry(entry, member, granter, { at: new Date(Date.UTC(2026, 0, 31)) }), DecryptionError, "not yet valid");
  const other = IdentityKeys.fromBytes(granter.accountId, b64d(loadVector("identity").cases[0].identity_keys));
  throws(() => openEntry(entry, other, granter, { at }), DecryptionError, "another member");
  throws(() => openEntry(entry, member, member.publicIdentity(), { at }), DecryptionError, "another granter");
});

function recordFixture() {
  const data = loadVector("record");
  return {
    data,
    author: PublicIdentity.fromJSON(data.author_identity),
    member: PublicIdentity.fromJSON(data.member_identity),
  };
}

test("records open (and re-keyed headers open with the new version)", () => {
  const { data, author, member } = recordFixture();
  for (const c of data.cases) {
    const rec = EncryptedRecord.fromJSON(c.record);
    jsonEq(rec.toJSON(), c.record, "round trip");
    const h = rec.header;
    const v1 = new ScopeKey(h.fileId, h.scope, 1, b64d(c.scope_key_v1));
    const v2 = new ScopeKey(h.fileId, h.scope, 2, b64d(c.scope_key_v2));
    const opened = openRecord(rec, { scopeKey: v1, author });
    bytesEq(opened.content, contentRule(c.content_length), "content");
    jsonEq(opened.metadata, c.metadata, "metadata");
    const rekeyed = RecordHeader.fromBytes(b64d(c.rekeyed_header_by_member));
    const dec = new RecordDecryptor(rekeyed, rec.metadataCiphertext, { scopeKey: v2, author, wrapper: member });
    const parts = [...dec.decryptSync(rec.chunks)];
    bytesEq(new Uint8Array(parts.flatMap((p) => [...p])), opened.content, "re-keyed content");
    throws(() => new RecordDecryptor(rekeyed, rec.metadataCiphertext, { scopeKey: v2, author }), DecryptionError,
      "re-keyed header without its wrapper");
    throws(() => new RecordDecryptor(rekeyed, rec.metadataCiphertext, { scopeKey: v1, author, wrapper: member }),
      DecryptionError, "re-keyed header with the old key version");
  }
});

test("record header tampered in any field is refused opaquely", () => {
  const { data, author } = recordFixture();
  const c = data.cases[1];
  const rec = EncryptedRecord.fromJSON(c.record);
  const v1 = new ScopeKey(rec.header.fileId, rec.header.scope, 1, b64d(c.scope_key_v1));
  const bytes = rec.header.toBytes();
  // One flipped bit in each field of the 410-byte layout.
  for (const offset of [0, 4, 5, 21, 37, 41, 42, 58, 82, 86, 94, 126, 158, 190, 254, 258, 274, 298, 346, 409]) {
    throws(() => openRecord(new EncryptedRecord(RecordHeader.fromBytes(flip(bytes, offset)), rec.metadataCiphertext, rec.chunks),
      { scopeKey: v1, author }), DecryptionError, `header byte ${offset}`);
  }
  throws(() => RecordHeader.fromBytes(bytes.subarray(0, 409)), DecryptionError, "short header");
  throws(() => EncryptedRecord.fromJSON({ ...c.record, record_version: 2 }), DecryptionError, "clear field disagrees");
  throws(() => EncryptedRecord.fromJSON({ ...c.record, scope: "shared" }), DecryptionError, "clear scope disagrees");
  throws(() => openRecord(rec, { scopeKey: new ScopeKey(rec.header.fileId, "clinical", 1, flip(v1.toBytes(), 0)), author }),
    DecryptionError, "wrong scope key");
  throws(() => openRecord(rec, { scopeKey: v1, author: PublicIdentity.fromJSON(data.member_identity) }),
    DecryptionError, "wrong author");
});

test("record metadata and chunks tampered, dropped, reordered or extended are refused", () => {
  const { data, author } = recordFixture();
  for (const c of data.cases) {
    const rec = EncryptedRecord.fromJSON(c.record);
    const v1 = new ScopeKey(rec.header.fileId, rec.header.scope, 1, b64d(c.scope_key_v1));
    const open = (meta: Uint8Array, chunks: Uint8Array[]) => openRecord(new EncryptedRecord(rec.header, meta, chunks),
      { scopeKey: v1, author });
    throws(() => open(flip(rec.metadataCiphertext, 30), [...rec.chunks]), DecryptionError, "metadata bit");
    throws(() => open(rec.metadataCiphertext, [flip(rec.chunks[0]!, 20), ...rec.chunks.slice(1)]), DecryptionError, "chunk bit");
    throws(() => open(rec.metadataCiphertext, rec.chunks.slice(0, -1)), DecryptionError, "dropped last chunk");
    throws(() => open(rec.metadataCiphertext, [...rec.chunks, rec.chunks[rec.chunks.length - 1]!]), DecryptionError, "extended");
    if (rec.chunks.length > 1) {
      throws(() => open(rec.metadataCiphertext, [...rec.chunks].reverse()), DecryptionError, "reordered");
    }
  }
});

test("a chunk from another record is refused", () => {
  const { data, author } = recordFixture();
  const [a, b] = [EncryptedRecord.fromJSON(data.cases[0].record), EncryptedRecord.fromJSON(data.cases[1].record)];
  const v1 = new ScopeKey(a.header.fileId, a.header.scope, 1, b64d(data.cases[0].scope_key_v1));
  throws(() => openRecord(new EncryptedRecord(a.header, a.metadataCiphertext, b.chunks), { scopeKey: v1, author }), DecryptionError);
  throws(() => openRecord(new EncryptedRecord(a.header, b.metadataCiphertext, a.chunks), { scopeKey: v1, author }), DecryptionError);
});

function invitationFixture() {
  const data = loadVector("invitation");
  return {
    data,
    payload: InvitationPayload.fromJSON(data.payload),
    redeemer: PublicIdentity.fromJSON(data.redeemer_identity),
    code: InvitationCode.fromText(data.code),
    inviter: IdentityKeys.fromBytes(data.inviter_id, b64d(data.inviter_identity_keys)),
    verifier: InvitationVerifier.fromJSON(data.verifier),
  };
}

test("invitation redeems, proves and checks", () => {
  const { data, payload, redeemer, code, inviter, verifier } = invitationFixture();
  jsonEq(payload.toJSON(), data.payload, "payload round trip");
  eq(code.toText(), data.code, "code text");
  eq(code.lookupId(), payload.lookupId, "lookup id");
  const redeemed = redeemInvitation(code, payload, redeemer);
  eq(redeemed.inviterId, data.inviter_id, "inviter id");
  bytesEq(redeemed.inviterFingerprint, b64d(data.inviter_fingerprint), "inviter fingerprint");
  bytesEq(redeemed.proof, b64d(data.redemption_proof), "proof");
  checkRedemption(verifier, inviter, { lookupId: payload.lookupId, fileId: payload.fileId, redeemer, proof: redeemed.proof });
  jsonEq(redeemed.scopeKeys.map((k) => [k.scope, k.version, b64e(k.toBytes())]),
    data.scope_keys.map((s: any) => [s.scope, s.version, s.key]), "scope keys");
});

test("invitation tampered, mis-coded or mis-proved is refused opaquely", () => {
  const { data, payload, redeemer, code, inviter, verifier } = invitationFixture();
  const p = (changes: Record<string, unknown>) => InvitationPayload.fromJSON({ ...data.payload, ...changes });
  throws(() => redeemInvitation(code, p({ ciphertext: b64e(flip(payload.ciphertext, 40)) }), redeemer), DecryptionError, "ciphertext");
  throws(() => redeemInvitation(code, p({ file_id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f1" }), redeemer), DecryptionError, "file");
  throws(() => redeemInvitation(code, p({ kdf: { alg: "argon2id13", opslimit: 17, memlimit: 8192 } }), redeemer),
    DecryptionError, "KDF above the ceiling");
  throws(() => redeemInvitation(new InvitationCode(flip(code.toBytes(), 0)), payload, redeemer), DecryptionError, "another code");
  throws(() => p({ version: 1 }), FormatError, "version 1 payload");
  const proof = b64d(data.redemption_proof);
  const other = PublicIdentity.fromJSON(loadVector("identity").cases[0].public_identity);
  const check = (changes: Partial<{ redeemer: PublicIdentity; proof: Uint8Array; lookupId: string }>, v = verifier, who = inviter) =>
    checkRedemption(v, who, { lookupId: payload.lookupId, fileId: payload.fileId, redeemer, proof, ...changes });
  throws(() => check({ proof: flip(proof, 0) }), DecryptionError, "forged proof");
  throws(() => check({ redeemer: other }), DecryptionError, "another redeemer");
  throws(() => check({ lookupId: "AAAAAAAAAAAAAAAAAAAAAA" }), DecryptionError, "another invitation");
  throws(() => check({}, new InvitationVerifier(verifier.nonce, flip(verifier.ciphertext, 3))), DecryptionError, "swapped verifier");
  throws(() => check({}, verifier, IdentityKeys.fromBytes(inviter.accountId, b64d(loadVector("identity").cases[1].identity_keys))),
    DecryptionError, "another inviter key");
});

test("local seal: crypto_kdf key, opens, refuses another account, purpose or a flipped byte", () => {
  const data = loadVector("local_seal");
  const alice = IdentityKeys.fromBytes(data.account_id, b64d(data.identity_keys));
  bytesEq(localKey(alice, data.purpose), b64d(data.key), "crypto_kdf subkey");
  bytesEq(localOpen(alice, data.purpose, data.sealed), b64d(data.plaintext), "opened");
  const bob = IdentityKeys.fromBytes("b0b00000-0000-4000-8000-000000000002", b64d(data.identity_keys));
  throws(() => localOpen(bob, data.purpose, data.sealed), DecryptionError, "another account");
  const body = b64d(data.sealed.split(".")[1]);
  throws(() => localOpen(alice, data.purpose, `ecrin-ls1.${b64e(flip(body, 30))}`), DecryptionError, "flipped");
  throws(() => localOpen(alice, data.purpose, data.sealed.replace("ls1", "ls2")), DecryptionError, "label");
  throws(() => localOpen(alice, "nothing", data.sealed), DecryptionError, "purpose");
});

test("blind-index tokens and normalisation", () => {
  const data = loadVector("blind_index");
  const key = new SearchKey(b64d(data.search_key));
  const owner = IdentityKeys.fromBytes("a11ce000-0000-4000-8000-000000000001", b64d(data.owner_identity_keys));
  ok(SearchKey.forOwner(owner).equals(key), "search key of the owner");
  for (const c of data.names) {
    eq(normaliseName(c.input), c.normalised, "normalised name");
    eq(key.nameToken(c.input), c.token, "name token");
  }
  for (const c of data.ins) {
    eq(normaliseIns(c.input), c.normalised, "normalised INS");
    eq(key.insToken(c.input), c.token, "INS token");
  }
  throws(() => normaliseIns("1 84 12 76 451 089 47"), FormatError, "INS key mismatch");
  throws(() => key.nameToken(" - '"), FormatError, "empty name");
});

test("key change verifies and links", () => {
  const data = loadVector("key_change");
  const old = PublicIdentity.fromJSON(data.old_identity);
  const next = PublicIdentity.fromJSON(data.new_identity);
  ok(IdentityKeys.fromBytes(next.accountId, b64d(data.new_identity_keys)).publicIdentity().equals(next), "new keys");
  const change = KeyChange.fromJSON(data.statement);
  jsonEq(change.toJSON(), data.statement, "round trip");
  bytesEq(change.signedBytes(), b64d(data.signed_bytes), "signed bytes");
  bytesEq(change.oldFingerprint, old.fingerprint(), "old fingerprint");
  change.verify(old, next);
  ok(keyChangeLinks(old.fingerprint(), [[old, change]], next), "links");
  ok(!keyChangeLinks(next.fingerprint(), [[old, change]], next), "does not link from the new key");
  throws(() => change.verify(next, old), IdentityMismatchError, "reversed");
  throws(() => KeyChange.fromJSON({ ...data.statement, changed_at: data.statement.changed_at + 1 }).verify(old, next),
    IdentityMismatchError, "changed time");
  throws(() => KeyChange.fromJSON({ ...data.statement, changed_at: 0 }), FormatError, "zero time");
});

test("padme", () => {
  for (const [n, p] of loadVector("padme").cases) eq(padme(n), p, `padme(${n})`);
});

test("audit heads verify; tampered ones do not", () => {
  const data = loadVector("audit_head");
  const key = new AuditSigningKey(b64d(data.signing_key));
  bytesEq(key.publicKey, b64d(data.public_key), "public key");
  for (const c of data.cases) {
    const signed = SignedAuditHead.fromJSON(c.signed_head);
    jsonEq(signed.toJSON(), c.signed_head, "round trip");
    bytesEq(signed.head.signedBytes(), b64d(c.signed_bytes), "signed bytes");
    signed.verify(key.publicKey);
    throws(() => SignedAuditHead.fromJSON({ ...c.signed_head, head: { ...c.signed_head.head, seq: 8 } }).verify(key.publicKey),
      DecryptionError, "changed seq");
    throws(() => signed.verify(flip(key.publicKey, 0)), DecryptionError, "another key");
    throws(() => SignedAuditHead.fromJSON({ ...c.signed_head, head: { ...c.signed_head.head, time: "2026-03-01T09:30:00.000Z" } }),
      FormatError, "non-canonical time");
  }
});

test("base64url is strict", () => {
  throws(() => b64d("AB=C"), FormatError);
  throws(() => b64d("AB+/"), FormatError);
  throws(() => b64d("AR"), FormatError, "non-canonical trailing bits");
  bytesEq(b64d("AQ=="), Uint8Array.of(1));
  bytesEq(b64d("AQ"), Uint8Array.of(1));
  eq(b64e(utf8("\u00ff")), "w78");
});

test("audit chains verify; edited, dropped, swapped or re-signed ones do not", () => {
  const data = loadVector("audit_chain");
  const served = data.served;
  const opts = { service: served.service, chain: served.chain };
  const ok1 = verifyServedChain(served, { ...opts, pinnedKey: b64d(served.audit_key), seen: { seq: 2, hash: served.events[1].hash } });
  eq(ok1.brokenAt, null, "served chain");
  for (const c of data.broken) eq(verifyChain(c.events), c.broken_at, c.what);
  const refuse = (body: unknown, reason: string, extra: object = {}) => {
    try {
      verifyServedChain(body, { ...opts, ...extra });
    } catch (e) {
      ok(e instanceof AuditChainError && e.reason === reason, `${reason}: got ${String(e)}`);
      return;
    }
    throw new Error(`${reason}: not refused`);
  };
  refuse({ ...served, signature: b64e(flip(b64d(served.signature), 1)) }, "bad-signature");
  refuse(served, "key-changed", { pinnedKey: flip(b64d(served.audit_key), 0) });
  refuse({ ...served, events: served.events.slice(0, 2) }, "not-last-event");
  refuse(served, "rewound", { seen: { seq: 2, hash: "0".repeat(64) } });
  refuse(served, "rewound", { seen: { seq: 4, hash: served.events[2].hash } });
  refuse({ events: served.events }, "unsigned");
});

test("names that Unicode functions could normalise differently give Python's tokens", () => {
  const data = loadVector("name_normalisation");
  const key = new SearchKey(b64d(data.search_key));
  for (const c of data.cases) {
    eq(normaliseName(c.input), c.normalised, `normalised ${JSON.stringify(c.input)}`);
    eq(key.nameToken(c.input), c.token, `token of ${JSON.stringify(c.input)}`);
  }
});

test("a record with metadata that needs care to sort and escape opens", () => {
  const data = loadVector("record_metadata");
  const rec = EncryptedRecord.fromJSON(data.record);
  const key = new ScopeKey(rec.header.fileId, rec.header.scope, 1, b64d(data.scope_key));
  const opened = openRecord(rec, { scopeKey: key, author: PublicIdentity.fromJSON(data.author_identity) });
  jsonEq(opened.metadata, data.metadata, "metadata");
  bytesEq(opened.content, contentRule(data.content_length), "content");
});
