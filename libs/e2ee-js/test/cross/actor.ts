/**
 * One device of one account, driven by the cross-implementation tests
 * (tests/e2ee_js/test_cross_*.py): `node actor.ts COMMAND 'JSON ARGS'` prints one JSON
 * result on stdout, or `{"error": class, "message": ...}` and exits 3.
 *
 * Like the Python CLI, the device's state lives in the profile folder `ECRIN_HOME` (a
 * `NodeFileStore`), the server is `ECRIN_SERVER`, the passphrase `ECRIN_PASSPHRASE`, and
 * `ECRIN_KDF_PROFILE=insecure-test` lowers Argon2id to the test gateway's minimum. Every
 * command that decrypts unlocks the identity with the passphrase, as a fresh process must;
 * Argon2id runs in the SDK's default worker thread, as an application's would.
 */

import { createHash, createHmac } from "node:crypto";

import {
  EcrinClient, EcrinError, NodeFileStore, nodeFileSpool, openSession, type Session,
} from "../../src/client/node.ts";

type Args = Record<string, any>;

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

/** RFC 6238 TOTP (SHA-1, 30 s, 6 digits) of a base32 secret: the authenticator app's part. */
function totp(secret: string, at = Date.now()): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** Deterministic pseudo-random content of `size` bytes, streamed in 100 000-byte pieces. */
function document(size: number, seed: string): { stream: ReadableStream<Uint8Array>; digest: string } {
  const hash = createHash("sha256");
  const pieces: Buffer[] = [];
  let counter = 0;
  for (let made = 0; made < size; made += 100_000) {
    const piece = Buffer.alloc(Math.min(100_000, size - made));
    for (let i = 0; i < piece.length; i += 32) {
      createHash("sha256").update(`${seed}:${counter++}`).digest().copy(piece, i);
    }
    hash.update(piece);
    pieces.push(piece);
  }
  let index = 0;
  return {
    digest: hash.digest("hex"),
    stream: new ReadableStream({
      pull(controller) {
        if (index < pieces.length) controller.enqueue(new Uint8Array(pieces[index++]!));
        else controller.close();
      },
    }),
  };
}

async function client(): Promise<EcrinClient> {
  return EcrinClient.open(env("ECRIN_SERVER"), { store: new NodeFileStore(env("ECRIN_HOME")) });
}

async function session(c: EcrinClient): Promise<Session> {
  return openSession(c, await c.unlock(env("ECRIN_PASSPHRASE")), { spool: () => nodeFileSpool() });
}

const commands: Record<string, (c: EcrinClient, a: Args) => Promise<unknown>> = {
  /** Sign up, sign in, enrol TOTP (the gateway's second-factor rule): a ready device. */
  async signup(c, a) {
    const created = await c.signup(a.email, env("ECRIN_PASSPHRASE"), a.role);
    const login = await c.login(a.email, env("ECRIN_PASSPHRASE"));
    const { secret } = await c.enableTotp();
    const recoveryCodes = await c.confirmTotp(totp(secret));
    return { account_id: created.accountId, fingerprint: login.fingerprint, recovery_codes: recoveryCodes };
  },
  async login(c, a) {
    const login = await c.login(a.email, a.passphrase ?? env("ECRIN_PASSPHRASE"), { recoveryCode: a.recovery_code });
    return { account_id: login.account.id, fingerprint: login.fingerprint, second_factor_verified: login.secondFactorVerified };
  },
  async directory(c, a) {
    return { fingerprint: (await c.directoryIdentity(a.account_id)).fingerprintHex() };
  },
  async pin(c, a) {
    await c.pin(a.account_id, a.fingerprint);
    return { pinned: a.account_id };
  },
  async "create-patient"(c, a) {
    const patient = await (await session(c)).patients.create({ name: a.name, birth_date: a.birth_date });
    return { file_id: patient.fileId, identity_record_id: patient.identityRecordId };
  },
  /** Every patient, and the requests the listing made (method and path): the fast path is
   * two batch requests per page of files, not a few per file. */
  async "list-patients"(c) {
    const s = await session(c);
    const requests: string[] = [];
    const real = globalThis.fetch;
    globalThis.fetch = (input, init) => {
      requests.push(`${init?.method ?? "GET"} ${new URL(String(input)).pathname}`);
      return real(input, init);
    };
    try {
      const found = await s.patients.list();
      return {
        patients: found.map((p) => ({ file_id: p.fileId, name: p.identity?.name, identity_record_id: p.identityRecordId })),
        unreadable: s.records.unreadable.length, requests,
      };
    } finally {
      globalThis.fetch = real;
    }
  },
  async search(c, a) {
    const found = await (await session(c)).patients.list(a.text);
    return found.map((p) => ({ file_id: p.fileId, name: p.identity?.name, birth_date: p.identity?.birth_date }));
  },
  async "create-record"(c, a) {
    const s = await session(c);
    let content: Uint8Array | ReadableStream<Uint8Array>;
    let digest: string;
    let size: number;
    if (a.size !== undefined) {
      ({ stream: content, digest } = document(a.size, a.seed ?? "ecrin"));
      size = a.size;
    } else {
      content = new TextEncoder().encode(a.text);
      digest = sha256(content);
      size = content.length;
    }
    const info = await s.records.create(a.file_id, a.scope, {
      title: a.title, kind: a.kind, content_type: a.content_type ?? "application/json", size,
      created_at: new Date().toISOString(),
    }, content);
    return { record_id: info.recordId, key_version: info.keyVersion, sha256: digest };
  },
  async "read-record"(c, a) {
    const s = await session(c);
    const { info, content } = await s.records.openContent(a.record_id, a.version);
    const hash = createHash("sha256");
    let text = "";
    const decoder = new TextDecoder();
    for await (const piece of content as unknown as AsyncIterable<Uint8Array>) {
      hash.update(piece);
      if (info.metadata.size <= 65536) text += decoder.decode(piece, { stream: true });
    }
    return {
      record_id: info.recordId, version: info.version, key_version: info.keyVersion, author_id: info.authorId,
      metadata: info.metadata, sha256: hash.digest("hex"), text: info.metadata.size <= 65536 ? text : undefined,
    };
  },
  async "list-records"(c, a) {
    const s = await session(c);
    const records = await s.records.list(a.file_id, a.scope);
    return {
      records: records.map((r) => ({ record_id: r.recordId, title: r.metadata.title, key_version: r.keyVersion, author_id: r.authorId })),
      unreadable: s.records.unreadable,
    };
  },
  async history(c, a) {
    const s = await session(c);
    return (await s.records.history(a.record_id)).map((r) => ({ version: r.version, title: r.metadata.title }));
  },
  async "add-version"(c, a) {
    const s = await session(c);
    const content = new TextEncoder().encode(a.text);
    const info = await s.records.addVersion(a.record_id, {
      title: a.title, kind: a.kind, content_type: "application/json", size: content.length, created_at: new Date().toISOString(),
    }, content);
    return { version: info.version, key_version: info.keyVersion };
  },
  async "delete-record"(c, a) {
    await (await session(c)).records.delete(a.record_id);
    return { deleted: a.record_id };
  },
  async grant(c, a) {
    const view = await (await session(c)).sharing.grant(a.file_id, a.account_id, a.relationship, { scopes: a.scopes });
    return { grant_id: view.grantId, trusted: view.trusted ?? null };
  },
  async revoke(c, a) {
    const done = await (await session(c)).sharing.revoke(a.grant_id);
    return {
      what: done.what,
      rotations: done.rotations.map((r) => ({ scope: r.scope, version: r.version, rekeyed: r.rekeyed, skipped: r.skipped, skipped_members: r.skippedMembers })),
    };
  },
  async sync(c, a) {
    const rotations = await (await session(c)).sharing.sync(a.file_id);
    return rotations.map((r) => ({ scope: r.scope, version: r.version, rekeyed: r.rekeyed }));
  },
  async invite(c, a) {
    const invited = await (await session(c)).sharing.invite(a.file_id, a.relationship, { scopes: a.scopes });
    return { invitation_id: invited.invitationId, code: invited.code };
  },
  async accept(c, a) {
    const accepted = await (await session(c)).sharing.accept(a.code);
    return { grant_id: accepted.grantId, file_id: accepted.fileId, inviter_id: accepted.inviterId, inviter_fingerprint: accepted.inviterFingerprint };
  },
  async overview(c, a) {
    const o = await (await session(c)).sharing.overview(a.file_id);
    return {
      grants: o.grants.map((g) => ({ grant_id: g.grantId, grantee_id: g.granteeId, relationship: g.relationship, status: g.status, trust: g.trustStatus })),
      invitations: o.invitations.map((i) => ({ invitation_id: i.invitationId, status: i.status, redeemed_by: i.redeemedBy ?? null, redeemer_bound: i.redeemerBound })),
    };
  },
  async leave(c, a) {
    const left = await (await session(c)).sharing.leave(a.file_id);
    return left.map((g) => ({ grant_id: g.grantId, status: g.status }));
  },
  async sessions(c) {
    return (await c.sessions()).map((s) => ({ session_id: s.sessionId, current: s.current }));
  },
  async "revoke-session"(c, a) {
    await c.revokeSession(a.session_id, { passphrase: a.passphrase, recoveryCode: a.recovery_code });
    return { revoked: a.session_id };
  },
  async "second-factor"(c) {
    return await c.secondFactor();
  },
  async "change-passphrase"(c, a) {
    await c.changePassphrase(env("ECRIN_PASSPHRASE"), a.new_passphrase, { recoveryCode: a.recovery_code });
    return { changed: true };
  },
  async audit(c, a) {
    const trail = await (await session(c)).audit(a.file_id);
    return {
      verified: trail.verified, chains: trail.chains.filter((ch) => ch.available).map((ch) => ch.chain),
      events: trail.events.length, actions: [...new Set(trail.events.map((e) => String(e.action)))].sort(),
    };
  },
};

const [command, raw] = process.argv.slice(2);
const run = commands[command ?? ""];
if (run === undefined) {
  process.stderr.write(`unknown command ${command}\n`);
  process.exit(2);
}
try {
  const result = await run(await client(), raw ? JSON.parse(raw) : {});
  process.stdout.write(`${JSON.stringify(result ?? null)}\n`);
} catch (error) {
  if (!(error instanceof EcrinError)) throw error;
  process.stdout.write(`${JSON.stringify({ error: error.name, message: error.message })}\n`);
  process.exit(3);
}
