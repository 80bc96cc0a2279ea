/**
 * Two fixes from the attacker's review, ported from the Python client (docs/protocol.md §17):
 *
 * - a device that has not recorded a file as its own (the web app after a reload, a second
 *   device) learns that it owns the file from the self-signed version-1 entry the kms holds
 *   for it, before a verified colleague may become the file's "first granter";
 * - `Sharing.revoke` rotates every scope of the revoked grant to a version newer than the
 *   one the member held, even when the rotation queue calls the current version "rotated".
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { IdentityKeys } from "../src/identity.ts";
import { KeyringEntry, ScopeKey, sealEntry } from "../src/keyring.ts";
import {
  GatewayTransport, inlineSlowCrypto, MemoryStore, Profile, Records, Sharing, Trust, Untrusted,
} from "../src/client/index.ts";

const FILE = "11111111-1111-4111-8111-111111111111";
const GRANT = "33333333-3333-4333-8333-333333333333";
const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const problem = (status: number): Response =>
  new Response(JSON.stringify({ type: "https://ecrin.test/problems/x", title: "x", status }),
    { status, headers: { "content-type": "application/problem+json" } });
const tokens = { access_token: "a", refresh_token: "r", session_id: "s" };

/** Version 1 of FILE's `scope` key, sealed to `member` and signed by `granter`. */
const v1 = (member: IdentityKeys, granter: IdentityKeys, scope: "clinical" | "shared" = "clinical"): KeyringEntry =>
  sealEntry(ScopeKey.generate(FILE, scope, 1), member.publicIdentity(),
    { relationship: "owner", permissions: ["read", "append"], granter });

function people() {
  return { me: IdentityKeys.generate(crypto.randomUUID()), colleague: IdentityKeys.generate(crypto.randomUUID()) };
}

/** A session of `me` on a fresh profile (nothing says it owns FILE) that verified the
 * colleague in person; the kms answers the version-1 lookup with `answer`. */
async function session(p: ReturnType<typeof people>, answer: () => Response) {
  const served = new Map([[p.me.accountId, p.me.publicIdentity()], [p.colleague.accountId, p.colleague.publicIdentity()]]);
  const asked: string[] = [];
  const fetch = async (url: string): Promise<Response> => {
    const u = new URL(url);
    asked.push(`${u.pathname}?${u.searchParams}`);
    return u.pathname === `/v1/keyrings/${FILE}/entries` ? answer() : problem(404);
  };
  const profile = new Profile(new MemoryStore());
  const directory = {
    profile,
    transport: new GatewayTransport("https://ecrin.test", { tokens, fetch, onTokens: async () => undefined }),
    directoryIdentity: async (id: string) => served.get(id)!,
    getDirectory: async (id: string) => served.get(id)!,
  };
  await profile.pin(p.colleague.accountId, p.colleague.publicIdentity().fingerprintHex());
  return { asked, trust: new Trust(directory, p.me) };
}

const entries = (...list: KeyringEntry[]) => () => json({ versions: { clinical: 2 }, entries: list.map((e) => e.toJSON()) });

describe("a device learns that it owns a file from its own first key version", () => {
  it("refuses a verified colleague's key version of a file whose version 1 it signed for itself", async () => {
    const p = people();
    const s = await session(p, entries(v1(p.me, p.me)));
    await assert.rejects(s.trust.granter(p.colleague.accountId, FILE, "clinical"), Untrusted);
    assert.equal((await s.trust.store.file(FILE)).owned, true);
    assert.deepEqual((await s.trust.store.file(FILE)).granters ?? [], [], "the colleague did not become a granter");
    assert.deepEqual(s.asked, [`/v1/keyrings/${FILE}/entries?scope=clinical&version=1`]);
    await assert.rejects(s.trust.granter(p.colleague.accountId, FILE, "shared"), Untrusted);
    assert.equal(s.asked.length, 1, "recorded as owned: not asked again");
  });

  it("still accepts the colleague as first granter where version 1 is the colleague's", async () => {
    const p = people();
    const s = await session(p, entries(v1(p.me, p.colleague)));
    await s.trust.granter(p.colleague.accountId, FILE, "clinical");
    assert.notEqual((await s.trust.store.file(FILE)).owned, true);
    assert.deepEqual((await s.trust.store.file(FILE)).granters, [p.colleague.accountId]);
  });

  it("is not fooled by a version-1 entry that names this account as granter but does not open", async () => {
    const p = people();
    const forged = KeyringEntry.fromJSON({ ...v1(p.me, p.colleague).toJSON(), granter_id: p.me.accountId });
    const stranger = IdentityKeys.generate(crypto.randomUUID());
    const notMine = v1(stranger, p.me); // sealed to another account
    const s = await session(p, entries(forged, notMine));
    await s.trust.granter(p.colleague.accountId, FILE, "clinical");
    assert.notEqual((await s.trust.store.file(FILE)).owned, true);
  });

  it("learns nothing where the kms refuses version 1 (a member added later), and asks once per session", async () => {
    const p = people();
    const s = await session(p, () => problem(403));
    await s.trust.granter(p.colleague.accountId, FILE, "clinical");
    await s.trust.granter(p.colleague.accountId, FILE, "shared");
    assert.equal(s.asked.length, 1);
  });

  it("does not look anything up for this account's own entries, nor without a scope", async () => {
    const p = people();
    const s = await session(p, entries(v1(p.me, p.me)));
    await s.trust.granter(p.me.accountId, FILE, "clinical");
    await s.trust.granter(p.colleague.accountId, FILE);
    assert.deepEqual(s.asked, []);
  });

  it("reads the owner's file through Records: the colleague's newer version is refused", async () => {
    const p = people();
    const mine = v1(p.me, p.me);
    const theirs = sealEntry(ScopeKey.generate(FILE, "clinical", 2), p.me.publicIdentity(),
      { relationship: "owner", permissions: ["read", "append"], granter: p.colleague });
    const served = new Map([[p.me.accountId, p.me.publicIdentity()], [p.colleague.accountId, p.colleague.publicIdentity()]]);
    const fetch = async (url: string): Promise<Response> => {
      const u = new URL(url);
      if (u.pathname !== `/v1/keyrings/${FILE}/entries`) return problem(404);
      const version = u.searchParams.get("version");
      const list = version === "1" ? [mine] : [theirs];
      return json({ versions: { clinical: 2 }, entries: list.map((e) => e.toJSON()) });
    };
    const profile = new Profile(new MemoryStore());
    await profile.pin(p.colleague.accountId, p.colleague.publicIdentity().fingerprintHex());
    const client: any = {
      profile, slow: inlineSlowCrypto, kdfProfile: "insecure-test",
      transport: new GatewayTransport("https://ecrin.test", { tokens, fetch, onTokens: async () => undefined }),
      retrying: <T>(call: () => Promise<T>) => call(),
      getDirectory: async (id: string) => served.get(id)!, directoryIdentity: async (id: string) => served.get(id)!,
    };
    const records = new Records(client, p.me);
    await assert.rejects(records.scopeKey(FILE, "clinical"), Untrusted);
    assert.equal((await records.scopeKey(FILE, "clinical", 1)).version, 1);
  });
});

/** The owner's device revoking a colleague's `shared` grant; the queue reports `rotatedVersion`. */
async function revoking(rotatedVersion: number | null) {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const colleague = IdentityKeys.generate(crypto.randomUUID());
  const sent: string[] = [];
  const posted: unknown[] = [];
  const grant = { id: GRANT, file_id: FILE, grantee_id: colleague.accountId, granter_id: me.accountId,
    relationship: "care_team", scopes: { shared: "read" }, kind: "direct" };
  const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    const u = new URL(url);
    const method = (init?.method ?? "GET").toUpperCase();
    sent.push(`${method} ${u.pathname}`);
    if (u.pathname === `/v1/grants/${GRANT}`) return json({ ...grant, status: method === "DELETE" ? "revoked" : "active" });
    if (u.pathname === "/v1/rotations") {
      return json([{ id: crypto.randomUUID(), file_id: FILE, scope: "shared", reason: "revoked", rotated_version: rotatedVersion }]);
    }
    if (method === "GET" && u.pathname === `/v1/keyrings/${FILE}/entries`) {
      return json({ versions: { shared: 1 }, entries: [v1(me, me, "shared").toJSON()] });
    }
    if (method === "POST" && u.pathname === `/v1/keyrings/${FILE}/entries`) {
      posted.push(JSON.parse(String(init?.body)));
      return json({}, 201);
    }
    if (u.pathname === "/v1/records/headers") return json({ items: [], next_cursor: null });
    if (u.pathname.startsWith(`/v1/rotations/${FILE}/`)) return json({ done: 1 });
    if (u.pathname === `/v1/files/${FILE}/members`) {
      return json([{ account_id: me.accountId, relationship: "owner", scopes: { shared: "append" } }]);
    }
    return problem(404);
  };
  const profile = new Profile(new MemoryStore());
  const identityOf = async (id: string) => (id === me.accountId ? me : colleague).publicIdentity();
  const client: any = {
    profile, slow: inlineSlowCrypto, kdfProfile: "insecure-test",
    transport: new GatewayTransport("https://ecrin.test", { tokens, fetch, onTokens: async () => undefined }),
    retrying: <T>(call: () => Promise<T>) => call(), getDirectory: identityOf, directoryIdentity: identityOf,
  };
  const records = new Records(client, me);
  await records.trust.store.ownFile(FILE);
  const out = await new Sharing(records, { slow: inlineSlowCrypto, kdfProfile: "insecure-test" }).revoke(GRANT);
  return { out, sent, posted };
}

describe("revoking rotates past the version the member held", () => {
  it("makes version 2 although the queue calls version 1 rotated", async () => {
    const { out, posted, sent } = await revoking(1);
    assert.deepEqual(out.rotations.map((r) => [r.scope, r.version]), [["shared", 2]]);
    assert.equal(posted.length, 1, "the new key version was posted");
    assert.ok(sent.indexOf(`GET /v1/grants/${GRANT}`) < sent.indexOf(`DELETE /v1/grants/${GRANT}`),
      "the member's key versions are read before the revocation");
  });

  it("rotates once where the queue is honest", async () => {
    const { out, posted } = await revoking(null);
    assert.deepEqual(out.rotations.map((r) => [r.scope, r.version]), [["shared", 2]]);
    assert.equal(posted.length, 1);
  });
});
