// Attacker's review (h11): the script tests/adversarial/test_review_ts_rotation.py runs with Node 24;
// @SRC@ is replaced by libs/e2ee-js/src, and the rotated_version the fake queue reports is set by the test.
import { IdentityKeys } from "@SRC@/identity.ts";
import { ScopeKey, sealEntry } from "@SRC@/keyring.ts";
import { GatewayTransport, MemoryStore, Profile, Records, Sharing, inlineSlowCrypto } from "@SRC@/client/index.ts";

const FILE = "11111111-1111-4111-8111-111111111111";
const GRANT = "33333333-3333-4333-8333-333333333333";
const me = IdentityKeys.generate(crypto.randomUUID());
const colleague = IdentityKeys.generate(crypto.randomUUID());
const v1 = ScopeKey.generate(FILE, "shared", 1);
const entry = sealEntry(v1, me.publicIdentity(), { relationship: "owner", permissions: ["read", "append"], granter: me });
const sent: string[] = [];
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const fetch = async (input: any, init?: any) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  const method = (init?.method ?? input.method ?? "GET").toUpperCase();
  sent.push(`${method} ${url.pathname}`);
  if (method === "DELETE" && url.pathname === `/v1/grants/${GRANT}`) {
    return json({ id: GRANT, file_id: FILE, grantee_id: colleague.accountId, granter_id: me.accountId,
      relationship: "care_team", scopes: { shared: "read" }, status: "revoked" });
  }
  if (url.pathname === "/v1/rotations") {
    // the lie: "this scope's rotation already stored its keys, at version 1" (the current one)
    return json([{ id: crypto.randomUUID(), file_id: FILE, scope: "shared", reason: "revoked",
      created_at: new Date().toISOString(), rotated_version: 1 }]);
  }
  if (method === "GET" && url.pathname === `/v1/keyrings/${FILE}/entries`) return json({ versions: { shared: 1 }, entries: [entry.toJSON()] });
  if (url.pathname === "/v1/records/headers") return json({ items: [], next_cursor: null });
  if (url.pathname.startsWith(`/v1/rotations/${FILE}/`)) return json({ done: 1 });
  if (url.pathname === `/v1/files/${FILE}/members`) return json([{ account_id: me.accountId, relationship: "owner", scopes: { shared: "append" } }]);
  if (method === "POST" && url.pathname === `/v1/keyrings/${FILE}/entries`) return json({}, 201);
  return json({ detail: "not found" }, 404);
};
const profile = new Profile(new MemoryStore());
const transport = new GatewayTransport("https://ecrin.test", {
  tokens: { access_token: "a", refresh_token: "r", session_id: "s" }, fetch, onTokens: async () => undefined,
});
const client: any = {
  transport, profile, slow: inlineSlowCrypto, kdfProfile: "moderate",
  retrying: (call: () => Promise<unknown>) => call(),
  async getDirectory(id: string) { return id === me.accountId ? me.publicIdentity() : colleague.publicIdentity(); },
  async directoryIdentity(id: string) { return id === me.accountId ? me.publicIdentity() : colleague.publicIdentity(); },
};
const records = new Records(client, me);
await records.trust.store.ownFile(FILE);
const sharing = new Sharing(records, { slow: client.slow, kdfProfile: "moderate" as any });
const out = await sharing.revoke(GRANT);
const shared = out.rotations.filter((r) => r.scope === "shared").map((r) => r.version);
console.log(JSON.stringify({ sharedVersions: shared, postedNewKeys: sent.includes(`POST /v1/keyrings/${FILE}/entries`) }));
