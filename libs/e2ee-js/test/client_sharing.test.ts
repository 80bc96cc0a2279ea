/**
 * The sharing overview and leaving a share over a fake sharing service: each member marked
 * by the trust rule (self, verified, or UNVERIFIED — never trusted because the server lists
 * it), invitations for the owner only, and a grantee that leaves revokes its own live grant
 * and nothing else (no rotation from its device).
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { IdentityKeys } from "../src/identity.ts";
import {
  GatewayTransport, inlineSlowCrypto, InvalidInput, MemoryStore, NotFound, Profile, Sharing,
} from "../src/client/index.ts";
import { Records } from "../src/client/records.ts";

const FILE = "55555555-5555-4555-8555-555555555555";
const problem = (status: number, slug: string): Response =>
  new Response(JSON.stringify({ type: `https://ecrin.test/problems/${slug}`, title: slug, status }),
    { status, headers: { "content-type": "application/problem+json" } });

type Call = { method: string; path: string };

function grant(id: string, grantee: string, granter: string, relationship: string, status = "active") {
  return { id, file_id: FILE, grantee_id: grantee, granter_id: granter, relationship, scopes: { shared: "read" }, kind: "direct", status };
}

async function fixture(grants: unknown[], invitations: Response | unknown[]) {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const others = new Map<string, IdentityKeys>();
  const calls: Call[] = [];
  const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    const { pathname } = new URL(url);
    const method = init?.method ?? "GET";
    calls.push({ method, path: pathname });
    if (pathname === "/v1/grants" && method === "GET") return Response.json(grants);
    if (pathname === "/v1/invitations") return invitations instanceof Response ? invitations : Response.json(invitations);
    const revoked = /^\/v1\/grants\/(.+)$/.exec(pathname);
    if (revoked && method === "DELETE") {
      const found = (grants as { id: string }[]).find((g) => g.id === revoked[1]);
      return found ? Response.json({ ...found, status: "revoked" }) : problem(404, "not-found");
    }
    return problem(404, "not-found");
  };
  const profile = new Profile(new MemoryStore());
  const identityOf = async (accountId: string) =>
    (accountId === me.accountId ? me : others.get(accountId) ?? others.set(accountId, IdentityKeys.generate(accountId)).get(accountId)!)
      .publicIdentity();
  const client = {
    profile, slow: inlineSlowCrypto, kdfProfile: "insecure-test" as const,
    transport: new GatewayTransport("https://ecrin.test", {
      tokens: { access_token: "a", refresh_token: "r", session_id: "s" }, fetch, onTokens: async () => undefined,
    }),
    retrying: <T>(call: () => Promise<T>) => call(),
    getDirectory: identityOf, directoryIdentity: identityOf,
  };
  const records = new Records(client, me);
  return { me, calls, profile, identityOf, sharing: new Sharing(records, { slow: inlineSlowCrypto, kdfProfile: "insecure-test" }) };
}

describe("the sharing overview", () => {
  it("marks each member by this device's trust, not by the server's list", async () => {
    const owner = crypto.randomUUID(), verified = crypto.randomUUID(), stranger = crypto.randomUUID();
    const g: unknown[] = [];
    const f = await fixture(g, problem(403, "forbidden"));
    g.push(grant(crypto.randomUUID(), owner, owner, "owner"), grant(crypto.randomUUID(), f.me.accountId, owner, "care_team"),
      grant(crypto.randomUUID(), verified, owner, "care_team"), grant(crypto.randomUUID(), stranger, owner, "care_team"));
    await f.profile.pin(owner, (await f.identityOf(owner)).fingerprintHex());
    await f.profile.pin(verified, (await f.identityOf(verified)).fingerprintHex());
    const overview = await f.sharing.overview(FILE);
    const marks = Object.fromEntries(overview.grants.map((m) => [m.granteeId, [m.trustStatus, m.pinned, m.safetyNumber !== undefined]]));
    assert.deepEqual(marks, {
      [owner]: ["verified", true, true], [f.me.accountId]: ["self", false, false],
      [verified]: ["verified", true, true], [stranger]: ["UNVERIFIED", false, true],
    });
    assert.equal(overview.grants.find((m) => m.granteeId === stranger)!.trusted, undefined);
    assert.deepEqual(overview.invitations, [], "only the owner sees invitations");
  });

  it("lists the owner's invitations, pending and redeemed", async () => {
    const redeemer = crypto.randomUUID();
    const pending = { id: crypto.randomUUID(), file_id: FILE, relationship: "parent", scopes: { shared: "read" }, status: "pending", expires_at: "2026-12-14T00:00:00Z" };
    const redeemed = { ...pending, id: crypto.randomUUID(), status: "redeemed", redeemed_by: redeemer, inviter_id: "someone else" };
    const f = await fixture([], [pending, redeemed]);
    const { invitations } = await f.sharing.overview(FILE);
    assert.deepEqual(invitations.map((i) => [i.invitationId, i.status, i.redeemedBy, i.redeemerBound, i.redeemerSafetyNumber !== undefined]), [
      [pending.id, "pending", undefined, false, false],
      [redeemed.id, "redeemed", redeemer, false, true], // its proof was not checked here: not bound
    ]);
  });

  it("refuses a malformed invitation", async () => {
    const f = await fixture([], [{ id: "nope", file_id: FILE, scopes: {} }]);
    await assert.rejects(f.sharing.overview(FILE), /malformed invitation/);
  });
});

describe("leaving a share", () => {
  it("revokes this account's live grants only, and rotates nothing from here", async () => {
    const owner = crypto.randomUUID(), mine = crypto.randomUUID(), old = crypto.randomUUID();
    const g: unknown[] = [];
    const f = await fixture(g, []);
    g.push(grant(crypto.randomUUID(), owner, owner, "owner"), grant(old, f.me.accountId, owner, "patient", "revoked"),
      grant(mine, f.me.accountId, owner, "patient"));
    const left = await f.sharing.leave(FILE);
    assert.deepEqual(left.map((l) => [l.grantId, l.status]), [[mine, "revoked"]]);
    assert.deepEqual(f.calls.filter((c) => c.method !== "GET"), [{ method: "DELETE", path: `/v1/grants/${mine}` }]);
  });

  it("refuses the owner, and an account that holds no grant", async () => {
    const g: unknown[] = [];
    const f = await fixture(g, []);
    g.push(grant(crypto.randomUUID(), f.me.accountId, f.me.accountId, "owner"));
    await assert.rejects(f.sharing.leave(FILE), InvalidInput);
    g.length = 0;
    await assert.rejects(f.sharing.leave(FILE), NotFound);
    assert.ok(!f.calls.some((c) => c.method === "DELETE"));
  });
});
