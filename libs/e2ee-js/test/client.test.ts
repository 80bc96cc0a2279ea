/**
 * The SDK's own rules, over a fake `fetch` (no server): the challenge check before signing,
 * the Argon2id floor and ceiling, one token refresh for concurrent requests, typed problem
 * errors, and the client state (pins, rollback marks, the Node profile folder's modes).
 */

import assert from "node:assert/strict";
import { mkdtemp, readdir, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { b64e } from "../src/_wire.ts";
import { KdfParams } from "../src/kdf.ts";
import {
  Conflict, EcrinClient, GatewayTransport, IdentityMismatch, IntegrityError, inlineSlowCrypto, InvalidCredentials,
  MemoryStore, NotFound, Profile, RateLimited, SessionRevoked, type Fetch,
} from "../src/client/index.ts";
import { checkChallenge } from "../src/client/challenge.ts";
import { NodeFileStore } from "../src/client/node-store.ts";

const SERVER = "https://ecrin.example.fr:8443";
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const json = (body: unknown, status = 200, headers: Record<string, string> = {}): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
const problem = (status: number, slug: string): Response =>
  new Response(JSON.stringify({ type: `https://ecrin.example.fr/problems/${slug}`, title: slug, status }),
    { status, headers: { "content-type": "application/problem+json" } });

function challengeText(host: string, action: string, id: string): string {
  return ["ecrin-auth-v1", host, action, id, "bm9uY2U", "1999999999"].join("\n");
}

describe("the login challenge is checked before it is signed", () => {
  it("accepts a challenge for this server and action", () => {
    checkChallenge(utf8(challengeText("ecrin.example.fr:8443", "login", "c1")), SERVER, "login", "c1");
  });

  for (const [what, text] of [
    ["another server", challengeText("evil.example", "login", "c1")],
    ["another action", challengeText("ecrin.example.fr:8443", "passphrase", "c1")],
    ["another challenge id", challengeText("ecrin.example.fr:8443", "login", "c2")],
    ["a malformed text", "ecrin-auth-v1\nhost"],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => checkChallenge(utf8(text), SERVER, "login", "c1"), IntegrityError);
    });
  }

  it("refuses weak server KDF parameters at login, before any Argon2id", async () => {
    const calls: string[] = [];
    const fetch: Fetch = async (url) => {
      calls.push(url);
      return json({
        challenge_id: "c1", challenge: b64e(utf8(challengeText("ecrin.example.fr:8443", "login", "c1"))),
        kdf: { salt: b64e(new Uint8Array(16)), params: KdfParams.insecureForTests().toJSON() },
      });
    };
    const client = await EcrinClient.open(SERVER, { fetch, slow: inlineSlowCrypto, kdfProfile: "moderate" });
    await assert.rejects(client.login("a@example.fr", "pass"), /weaker than this client accepts/);
    assert.deepEqual(calls, [`${SERVER}/v1/auth/challenge`]);
  });

  it("refuses KDF parameters above the ceiling", async () => {
    const fetch: Fetch = async () => json({
      challenge_id: "c1", challenge: b64e(utf8(challengeText("ecrin.example.fr:8443", "login", "c1"))),
      kdf: { salt: b64e(new Uint8Array(16)), params: { alg: "argon2id13", opslimit: 64, memlimit: 268435456 } },
    });
    const client = await EcrinClient.open(SERVER, { fetch, slow: inlineSlowCrypto, kdfProfile: "moderate" });
    await assert.rejects(client.login("a@example.fr", "pass"), /above what this client accepts/);
  });
});

describe("the transport", () => {
  const tokens = { access_token: "old", refresh_token: "r1", session_id: "s" };

  it("refreshes once for concurrent requests that got 401, then retries them", async () => {
    let refreshes = 0;
    const fetch: Fetch = async (url, init) => {
      const auth = new Headers(init?.headers).get("authorization");
      if (url.endsWith("/v1/auth/refresh")) {
        refreshes++;
        await new Promise((r) => setTimeout(r, 20));
        return json({ access_token: "new", refresh_token: "r2", session_id: "s", account: { id: "a" } });
      }
      return auth === "Bearer new" ? json({ ok: true }) : problem(401, "token-expired");
    };
    const saved: unknown[] = [];
    const t = new GatewayTransport(SERVER, { tokens, fetch, onTokens: async (x) => void saved.push(x) });
    const answers = await Promise.all([t.json("GET", "/v1/a"), t.json("GET", "/v1/b"), t.json("GET", "/v1/c")]);
    assert.deepEqual(answers, [{ ok: true }, { ok: true }, { ok: true }]);
    assert.equal(refreshes, 1);
    assert.equal(t.tokens?.refresh_token, "r2");
    assert.equal(saved.length, 1);
  });

  it("forgets the tokens when the refresh token is refused", async () => {
    const fetch: Fetch = async (url) => (url.endsWith("/refresh") ? problem(401, "refresh-token-reused") : problem(401, "token-expired"));
    const t = new GatewayTransport(SERVER, { tokens, fetch, onTokens: async () => undefined });
    await assert.rejects(t.json("GET", "/v1/a"), SessionRevoked);
    assert.equal(t.tokens, undefined);
  });

  it("does not refresh on invalid credentials", async () => {
    let refreshed = false;
    const fetch: Fetch = async (url) => {
      if (url.endsWith("/refresh")) refreshed = true;
      return problem(401, "invalid-credentials");
    };
    const t = new GatewayTransport(SERVER, { tokens, fetch, onTokens: async () => undefined });
    await assert.rejects(t.json("GET", "/v1/a"), InvalidCredentials);
    assert.equal(refreshed, false);
  });

  it("maps problems to typed errors, with Retry-After", async () => {
    const answers: Record<string, Response> = {
      "/v1/conflict": problem(409, "email-taken"),
      "/v1/missing": problem(404, "not-found"),
      "/v1/limited": new Response("{}", { status: 429, headers: { "retry-after": "7" } }),
    };
    const t = new GatewayTransport(SERVER, { tokens, fetch: async (url) => answers[new URL(url).pathname]!, onTokens: async () => undefined });
    await assert.rejects(t.json("GET", "/v1/conflict"), Conflict);
    await assert.rejects(t.json("GET", "/v1/missing"), NotFound);
    await assert.rejects(t.json("GET", "/v1/limited"), (e: unknown) => e instanceof RateLimited && e.retryAfter === 7);
  });
});

describe("the client state", () => {
  const fingerprint = "ab".repeat(32);

  it("refuses to pin another key over a pin", async () => {
    const profile = new Profile(new MemoryStore());
    await profile.pin("acc", fingerprint);
    await profile.pin("acc", fingerprint.toUpperCase()); // the same key, written otherwise
    await assert.rejects(profile.pin("acc", "cd".repeat(32)), IdentityMismatch);
  });

  it("never lowers a rollback mark", async () => {
    const profile = new Profile(new MemoryStore());
    await profile.rememberVersions({ r: 3 });
    await profile.rememberVersions({ r: 2, s: 1 });
    assert.deepEqual(await profile.seenVersions(), { r: 3, s: 1 });
  });

  it("keeps a Node profile in a 0700 folder of 0600 files, without temporary leftovers", async () => {
    const home = join(await mkdtemp(join(tmpdir(), "ecrin-store-")), "profile");
    const profile = new Profile(new NodeFileStore(home));
    await profile.pin("acc", fingerprint);
    await profile.saveTokens({ access_token: "a", refresh_token: "r", session_id: "s" });
    assert.equal((await stat(home)).mode & 0o777, 0o700);
    for (const name of await readdir(home)) assert.equal((await stat(join(home, name))).mode & 0o777, 0o600, name);
    assert.deepEqual((await readdir(home)).sort(), ["pins.json", "tokens.json"]);
    await profile.saveTokens(undefined);
    assert.deepEqual(await readdir(home), ["pins.json"]);
    assert.equal(await new Profile(new NodeFileStore(home)).pinned("acc"), fingerprint.match(/.{4}/g)!.join(" "));
  });
});

describe("rollback protection", () => {
  const FILE = "33333333-3333-4333-8333-333333333333";
  const RECORD = "44444444-4444-4444-8444-444444444444";

  async function records(answer: (path: string) => unknown) {
    const { IdentityKeys } = await import("../src/identity.ts");
    const { Records } = await import("../src/client/records.ts");
    const profile = new Profile(new MemoryStore());
    const transport = new GatewayTransport(SERVER, {
      tokens: { access_token: "a", refresh_token: "r", session_id: "s" },
      fetch: async (url) => json(answer(new URL(url).pathname)), onTokens: async () => undefined,
    });
    const client = {
      profile, transport, slow: inlineSlowCrypto, kdfProfile: "insecure-test" as const,
      retrying: <T>(call: () => Promise<T>) => call(),
      getDirectory: async () => assert.fail("no directory lookup expected"),
      directoryIdentity: async () => assert.fail("no directory lookup expected"),
    };
    return { profile, records: new Records(client, IdentityKeys.generate(crypto.randomUUID())) };
  }

  it("refuses a record version older than one this device saw", async () => {
    const { profile, records: r } = await records(() => ({ record_id: RECORD, file_id: FILE, current_version: 2 }));
    await profile.rememberVersions({ [RECORD]: 3 });
    await assert.rejects(r.get(RECORD), /older than one this device already saw/);
  });

  it("refuses a latest key version older than one this device used", async () => {
    const { profile, records: r } = await records(() => ({ versions: { clinical: 1 }, entries: [] }));
    await profile.rememberVersions({ [`key:${FILE}:clinical`]: 2 });
    await assert.rejects(r.scopeKey(FILE, "clinical"), /key rollback/);
  });

  it("refuses a server that withholds a key version it already showed", async () => {
    const { profile, records: r } = await records(() => ({ versions: { clinical: 2 }, entries: [] }));
    await profile.rememberVersions({ [`key:${FILE}:clinical`]: 2 });
    await assert.rejects(r.scopeKey(FILE, "clinical"), /withholds/);
  });
});
