/**
 * The account's security settings over a fake gateway (no server): sessions and the
 * step-up that ending another one takes, the passphrase change's four steps (and the
 * orphan wrap removed when the gateway refuses the switch), the second factor's status,
 * and a login that hands back the identity it opened.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { b64d, b64e } from "../src/_wire.ts";
import { createAccount, unwrapIdentity, WrappedIdentity } from "../src/account.ts";
import { deriveAccountKeys, KdfParams, verifySignature } from "../src/kdf.ts";
import {
  AuthError, EcrinClient, inlineSlowCrypto, InvalidCredentials, InvalidInput, MemoryStore, type Fetch,
} from "../src/client/index.ts";

const SERVER = "https://ecrin.example.fr";
const ACCOUNT = "6ba7b810-9dad-41d1-80b4-00c04fd430c8";
const OTHER_SESSION = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const MY_SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e";
const PARAMS = KdfParams.insecureForTests();
const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const json = (body: unknown, status = 200): Response =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const problem = (status: number, slug: string): Response =>
  new Response(JSON.stringify({ type: `https://ecrin.example.fr/problems/${slug}`, title: slug, status }),
    { status, headers: { "content-type": "application/problem+json" } });
const noContent = (): Response => new Response(null, { status: 204 });

type Call = { method: string; path: string; body?: any };

/** A gateway holding one account: challenges for any action, its passphrase wrap, sessions. */
function gateway(passphrase: string, answer: (call: Call) => Response | undefined = () => undefined) {
  const setup = createAccount(ACCOUNT, passphrase, PARAMS);
  // `loginUnlock`: the login's answer carries the unlock bundle when asked (off: a kms that
  // did not give it); `unlockKnown` off: a gateway older than `unlock`, which refuses it (422).
  const state = { salt: setup.salt, loginPublicKey: setup.loginPublicKey, wraps: new Map<string, unknown>(),
    loginUnlock: true, unlockKnown: true };
  state.wraps.set(b64e(setup.salt), setup.wrappedByPassphrase.toJSON());
  const calls: Call[] = [];
  const challenges = new Map<string, Uint8Array>();
  let n = 0;
  const fetch: Fetch = async (url, init) => {
    const path = url.slice(SERVER.length);
    const call: Call = { method: init?.method ?? "GET", path };
    if (typeof init?.body === "string") call.body = JSON.parse(init.body);
    calls.push(call);
    const special = answer(call);
    if (special !== undefined) return special;
    if (path === "/v1/auth/challenge") {
      const id = `c${++n}`;
      const data = utf8(["ecrin-auth-v1", "ecrin.example.fr", call.body.action, id, "bm9uY2U", "1999999999"].join("\n"));
      challenges.set(id, data);
      return json({ challenge_id: id, challenge: b64e(data), kdf: { salt: b64e(state.salt), params: PARAMS.toJSON() } });
    }
    if (path === "/v1/auth/sessions") {
      return json([
        { id: MY_SESSION, device_name: "poste 1", kind: "normal", created_at: "2026-01-01T00:00:00Z", last_used_at: "2026-01-02T00:00:00Z", current: true },
        { id: OTHER_SESSION, device_name: null, kind: "normal", created_at: "2026-01-01T00:00:00Z", last_used_at: "2026-01-01T00:00:00Z", current: false },
      ]);
    }
    const wrap = /^\/v1\/keys\/me\/wraps\/passphrase\/(.+)$/.exec(path);
    if (wrap) {
      const salt = decodeURIComponent(wrap[1]!);
      if (call.method === "GET") return state.wraps.has(salt) ? json(state.wraps.get(salt)) : problem(404, "not-found");
      if (call.method === "PUT") state.wraps.set(salt, call.body);
      if (call.method === "DELETE") state.wraps.delete(salt);
      return noContent();
    }
    if (path === "/v1/auth/passphrase" || path.endsWith("/revoke")) {
      const signed = challenges.get(call.body.challenge_id);
      const ok = signed !== undefined && verifySignature(state.loginPublicKey, signed, b64d(call.body.signature));
      if (!ok) return problem(401, "invalid-credentials");
      if (path === "/v1/auth/passphrase") {
        state.salt = b64d(call.body.new_kdf.salt);
        state.loginPublicKey = b64d(call.body.new_login_public_key);
      }
      return noContent();
    }
    if (path.startsWith("/v1/auth/sessions/")) return noContent();
    const entry = { identity: setup.publicIdentity.toJSON(), fingerprint: setup.publicIdentity.fingerprintHex(), key_changes: [] };
    if (path === "/v1/auth/login") {
      if ("unlock" in call.body && !state.unlockKnown) {
        return new Response(JSON.stringify({ type: "https://ecrin.example.fr/problems/validation-error", status: 422,
          detail: "The request does not match the schema.",
          errors: [{ loc: ["body", "unlock"], msg: "Extra inputs are not permitted", type: "extra_forbidden" }] }),
        { status: 422, headers: { "content-type": "application/problem+json" } });
      }
      const signed = challenges.get(call.body.challenge_id);
      if (signed === undefined || !verifySignature(state.loginPublicKey, signed, b64d(call.body.signature))) {
        return problem(401, "invalid-credentials");
      }
      const unlock = call.body.unlock === true && state.loginUnlock && state.wraps.has(b64e(state.salt))
        ? { wrap: state.wraps.get(b64e(state.salt)), directory: entry } : null;
      return json({ access_token: "a", refresh_token: "r", session_id: MY_SESSION, second_factor_verified: false,
        account: { id: ACCOUNT, email: "a@example.fr", role: "practitioner", second_factor_enabled: false }, unlock });
    }
    if (path === `/v1/directory/${ACCOUNT}`) return json(entry);
    const unlock = /^\/v1\/keys\/me\/unlock\/(.+)$/.exec(path);
    if (unlock) {
      const salt = decodeURIComponent(unlock[1]!);
      return state.wraps.has(salt) ? json({ wrap: state.wraps.get(salt), directory: entry }) : problem(404, "not-found");
    }
    if (path === "/v1/auth/me") {
      return json({ account: { id: ACCOUNT, email: "a@example.fr", role: "practitioner", second_factor_enabled: true },
        session_id: MY_SESSION, session_kind: "normal", second_factor_verified: true });
    }
    return problem(404, "not-found");
  };
  return { fetch, calls, state, setup, challenges };
}

async function signedIn(fetch: Fetch, setup: ReturnType<typeof createAccount>): Promise<EcrinClient> {
  const store = new MemoryStore();
  const client = await EcrinClient.open(SERVER, { fetch, store, slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
  await client.profile.updateSettings({
    server_url: SERVER, account_id: ACCOUNT, email: "a@example.fr", role: "practitioner",
    kdf_salt: b64e(setup.salt), kdf_params: PARAMS.toJSON(), stale_wrap_salts: [],
  });
  await client.transport.setTokens({ access_token: "a", refresh_token: "r", session_id: MY_SESSION });
  return client;
}

describe("sessions", () => {
  it("lists the account's sessions, marking this one", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    const sessions = await client.sessions();
    assert.deepEqual(sessions.map((s) => [s.sessionId, s.current, s.deviceName]),
      [[MY_SESSION, true, "poste 1"], [OTHER_SESSION, false, null]]);
  });

  it("refuses a malformed session list", async () => {
    const g = gateway("pass", (c) => (c.path === "/v1/auth/sessions" ? json([{ id: 3 }]) : undefined));
    const client = await signedIn(g.fetch, g.setup);
    await assert.rejects(client.sessions(), /malformed session list/);
  });

  it("ends this session with its own token, and forgets the tokens", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    await client.revokeSession(MY_SESSION);
    assert.deepEqual(g.calls.map((c) => `${c.method} ${c.path}`), [`DELETE /v1/auth/sessions/${MY_SESSION}`]);
    assert.equal(client.transport.tokens, undefined);
  });

  it("needs the passphrase to end another session, and asks nothing of the gateway without it", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    await assert.rejects(client.revokeSession(OTHER_SESSION), InvalidInput);
    assert.deepEqual(g.calls, []);
  });

  it("ends another session with a step-up: a fresh 'sessions' challenge signed by the login key, and the second factor", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    await client.revokeSession(OTHER_SESSION, { passphrase: "pass", totpCode: " 123456 " });
    const [challenge, revoke] = g.calls;
    assert.deepEqual(challenge!.body, { email: "a@example.fr", action: "sessions" });
    assert.equal(revoke!.path, `/v1/auth/sessions/${OTHER_SESSION}/revoke`);
    assert.equal(revoke!.body.totp_code, "123456");
    const signed = g.challenges.get(revoke!.body.challenge_id)!;
    assert.ok(verifySignature(g.setup.loginPublicKey, signed, b64d(revoke!.body.signature)));
    assert.ok(client.transport.tokens !== undefined, "this session goes on");
  });

  it("a wrong passphrase makes a signature the gateway refuses", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    await assert.rejects(client.revokeSession(OTHER_SESSION, { passphrase: "wrong" }), AuthError);
  });

  it("reports whether a second factor is enrolled", async () => {
    const g = gateway("pass");
    const client = await signedIn(g.fetch, g.setup);
    assert.deepEqual(await client.secondFactor(), { enabled: true, verifiedThisSession: true });
  });
});

describe("login", () => {
  it("returns the identity it opened when asked, so that unlocking needs no second Argon2id", async () => {
    const g = gateway("pass");
    const client = await EcrinClient.open(SERVER, { fetch: g.fetch, store: new MemoryStore(), slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
    const plain = await client.login("a@example.fr", "pass");
    assert.equal(plain.identity, undefined, "not unless asked");
    const before = g.calls.length;
    const result = await client.login("a@example.fr", "pass", { unlock: true });
    assert.equal(g.calls.slice(before).filter((c) => c.path === "/v1/auth/challenge").length, 1);
    assert.ok(result.identity!.publicIdentity().equals(g.setup.publicIdentity));
    assert.equal(result.fingerprint, g.setup.publicIdentity.fingerprintHex());
  });

  /** A login from a new device through `g`: its result, and the requests it sent. */
  const loggedIn = async (g: ReturnType<typeof gateway>) => {
    const client = await EcrinClient.open(SERVER, { fetch: g.fetch, store: new MemoryStore(), slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
    const result = await client.login("a@example.fr", "pass");
    assert.equal(result.fingerprint, g.setup.publicIdentity.fingerprintHex());
    return g.calls.map((c) => `${c.method} ${c.path}`);
  };

  it("takes two requests: the wrap and the own directory entry come with the login's answer", async () => {
    const g = gateway("pass");
    assert.deepEqual(await loggedIn(g), ["POST /v1/auth/challenge", "POST /v1/auth/login"]);
    assert.equal(g.calls[1]!.body.unlock, true);
  });

  it("logs in through a gateway older than unlock: the same signed body without it", async () => {
    const g = gateway("pass");
    g.state.unlockKnown = false;
    assert.deepEqual(await loggedIn(g), [
      "POST /v1/auth/challenge", "POST /v1/auth/login", "POST /v1/auth/login", `GET /v1/keys/me/unlock/${b64e(g.setup.salt)}`,
    ]);
    assert.equal(g.calls[2]!.body.signature, g.calls[1]!.body.signature);
    assert.equal(g.calls[2]!.body.unlock, undefined);
  });

  it("sends a login refused for another field once, with the server's reason per field", async () => {
    const g = gateway("pass", (call) => call.path !== "/v1/auth/login" ? undefined
      : new Response(JSON.stringify({ type: "https://ecrin.example.fr/problems/validation-error", status: 422,
        detail: "The request does not match the schema.",
        errors: [{ loc: ["body", "device_name"], msg: "String should have at most 120 characters" }] }),
      { status: 422, headers: { "content-type": "application/problem+json" } }));
    const client = await EcrinClient.open(SERVER, { fetch: g.fetch, store: new MemoryStore(), slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
    await assert.rejects(client.login("a@example.fr", "pass", { deviceName: "x".repeat(121) }), (error: unknown) => {
      assert.ok(error instanceof InvalidInput);
      assert.deepEqual(error.fields, { device_name: "String should have at most 120 characters" });
      return true;
    });
    assert.equal(g.calls.filter((c) => c.path === "/v1/auth/login").length, 1);
  });

  it("asks for the keys in a third request when the login's answer does not carry them", async () => {
    const g = gateway("pass");
    g.state.loginUnlock = false;
    assert.deepEqual(await loggedIn(g), [
      "POST /v1/auth/challenge", "POST /v1/auth/login", `GET /v1/keys/me/unlock/${b64e(g.setup.salt)}`,
    ]);
  });

  const other = createAccount(ACCOUNT, "someone else", PARAMS).publicIdentity;
  const forged = { identity: other.toJSON(), fingerprint: other.fingerprintHex(), key_changes: [] };

  it("refuses a directory entry served with the wrap that is not the identity it opens", async () => {
    const swapped = gateway("pass", (call) => call.path.startsWith("/v1/keys/me/unlock/")
      ? json({ wrap: swapped.state.wraps.get(call.path.split("/").pop()!), directory: forged })
      : undefined);
    swapped.state.loginUnlock = false;
    const client = await EcrinClient.open(SERVER, { fetch: swapped.fetch, store: new MemoryStore(), slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
    await assert.rejects(client.login("a@example.fr", "pass"), { name: "IdentityMismatch" });
  });

  it("checks the keys a login's answer carries as those it fetches", async () => {
    const carrying = async (unlock: (wrap: unknown) => unknown) => {
      const g = gateway("pass", (call) => call.path !== "/v1/auth/login" ? undefined
        : json({ access_token: "a", refresh_token: "r", session_id: MY_SESSION, second_factor_verified: false,
          account: { id: ACCOUNT, email: "a@example.fr", role: "practitioner", second_factor_enabled: false },
          unlock: unlock(g.state.wraps.get(b64e(g.state.salt))) }));
      const client = await EcrinClient.open(SERVER, { fetch: g.fetch, store: new MemoryStore(), slow: inlineSlowCrypto, kdfProfile: "insecure-test" });
      return client.login("a@example.fr", "pass");
    };
    await assert.rejects(carrying((wrap) => ({ wrap, directory: forged })), { name: "IdentityMismatch" });
    await assert.rejects(carrying(() => ({ wrap: "not a wrap" })), { name: "ServerError" });
  });
});

describe("changing the passphrase", () => {
  it("stores the new wrap first, switches with the old login key, then deletes the old wrap", async () => {
    const g = gateway("old pass");
    const client = await signedIn(g.fetch, g.setup);
    const oldSalt = b64e(g.setup.salt);
    await client.changePassphrase("old pass", "new pass", { totpCode: "654321" });
    const steps = g.calls.map((c) => `${c.method} ${c.path.replace(/passphrase\/.+$/, "passphrase/SALT")}`);
    assert.deepEqual(steps, [
      "POST /v1/auth/challenge", "GET /v1/keys/me/wraps/passphrase/SALT", "PUT /v1/keys/me/wraps/passphrase/SALT",
      "POST /v1/auth/challenge", "POST /v1/auth/passphrase", "DELETE /v1/keys/me/wraps/passphrase/SALT",
    ]);
    const put = g.calls[2]!, del = g.calls[5]!;
    assert.notEqual(put.path, del.path);
    assert.ok(del.path.endsWith(encodeURIComponent(oldSalt)) || del.path.endsWith(oldSalt));
    assert.equal(g.calls[4]!.body.totp_code, "654321");
    // What the gateway now holds opens with the new passphrase only, and the profile follows.
    assert.deepEqual([...g.state.wraps.keys()], [b64e(g.state.salt)]);
    const wrapped = WrappedIdentity.fromJSON(g.state.wraps.get(b64e(g.state.salt)));
    const kek = deriveAccountKeys("new pass", g.state.salt, PARAMS).kek;
    assert.equal(unwrapIdentity(wrapped, kek).accountId, ACCOUNT);
    assert.deepEqual(g.state.loginPublicKey, deriveAccountKeys("new pass", g.state.salt, PARAMS).loginPublicKey);
    const settings = await client.profile.settings();
    assert.equal(settings.kdf_salt, b64e(g.state.salt));
    assert.deepEqual(settings.stale_wrap_salts, []);
  });

  it("refuses a wrong current passphrase before storing anything", async () => {
    const g = gateway("old pass");
    const client = await signedIn(g.fetch, g.setup);
    await assert.rejects(client.changePassphrase("not it", "new pass"), InvalidCredentials);
    assert.ok(!g.calls.some((c) => c.method === "PUT" || c.path === "/v1/auth/passphrase"));
  });

  it("removes the orphan wrap when the gateway refuses the switch (second factor missing)", async () => {
    const g = gateway("old pass", (c) => (c.path === "/v1/auth/passphrase" ? problem(401, "second-factor-required") : undefined));
    const client = await signedIn(g.fetch, g.setup);
    await assert.rejects(client.changePassphrase("old pass", "new pass"), /second-factor/);
    assert.deepEqual([...g.state.wraps.keys()], [b64e(g.setup.salt)], "only the old wrap is left");
    assert.equal((await client.profile.settings()).kdf_salt, b64e(g.setup.salt));
  });
});


