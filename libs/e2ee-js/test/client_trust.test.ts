/**
 * The trust rule (docs/protocol.md §17) as the SDK applies it, over a fake directory: a key
 * is used only with a reason this device recorded (self, verified, invitation for that file),
 * a changed key is refused, and keyring entries come only from entitled granters.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { IdentityKeys, type PublicIdentity } from "../src/identity.ts";
import {
  GatewayTransport, IdentityMismatch, MemoryStore, Profile, Trust, Untrusted,
} from "../src/client/index.ts";

const FILE = "11111111-1111-4111-8111-111111111111";
const OTHER_FILE = "22222222-2222-4222-8222-222222222222";

function setup() {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const people = Object.fromEntries(["alice", "bob", "carol"].map((n) => [n, IdentityKeys.generate(crypto.randomUUID())]));
  const served = new Map<string, PublicIdentity>(Object.values(people).map((k) => [k.accountId, k.publicIdentity()]));
  served.set(me.accountId, me.publicIdentity());
  const profile = new Profile(new MemoryStore());
  const directory = {
    profile,
    transport: new GatewayTransport("https://ecrin.test", {
      tokens: { access_token: "a", refresh_token: "r", session_id: "s" },
      fetch: async () => new Response("[]", { headers: { "content-type": "application/json" } }),
      onTokens: async () => undefined,
    }),
    async directoryIdentity(id: string) {
      return served.get(id)!;
    },
    async getDirectory(id: string) {
      return served.get(id)!;
    },
  };
  const fingerprint = (k: IdentityKeys) => k.publicIdentity().fingerprintHex();
  return { me, people, served, profile, directory, trust: new Trust(directory, me), fingerprint };
}

describe("the trust rule", () => {
  it("trusts this account itself", async () => {
    const { me, trust } = setup();
    assert.equal(await trust.reason(me.accountId), "self");
    assert.ok((await trust.identity(me.accountId)).equals(me.publicIdentity()));
  });

  it("refuses an account nothing vouches for, whatever the directory serves", async () => {
    const { people, trust } = setup();
    await assert.rejects(trust.identity(people.alice!.accountId, { fileId: FILE }), Untrusted);
    await assert.rejects(trust.granter(people.alice!.accountId, FILE), Untrusted);
  });

  it("uses a verified (pinned) key, and refuses it once the directory serves another", async () => {
    const { me, people, profile, served, directory, trust, fingerprint } = setup();
    const alice = people.alice!;
    await profile.pin(alice.accountId, fingerprint(alice));
    assert.equal(await trust.reason(alice.accountId), "verified");
    await trust.identity(alice.accountId);
    served.set(alice.accountId, IdentityKeys.generate(alice.accountId).publicIdentity());
    await assert.rejects(new Trust(directory, me).identity(alice.accountId), IdentityMismatch);
  });

  it("binds an inviter for the invitation's file only", async () => {
    const { people, trust } = setup();
    const bob = people.bob!;
    await trust.bindInviter(bob.publicIdentity(), bob.publicIdentity().fingerprint(), FILE, "inv-1");
    assert.equal(await trust.reason(bob.accountId, FILE), "invitation");
    assert.equal(await trust.reason(bob.accountId, OTHER_FILE), undefined);
    await trust.granter(bob.accountId, FILE);
    await assert.rejects(trust.granter(bob.accountId, OTHER_FILE), Untrusted);
  });

  it("refuses an inviter whose directory key is not the one the code names", async () => {
    const { people, trust } = setup();
    const substituted = IdentityKeys.generate(people.bob!.accountId).publicIdentity();
    await assert.rejects(trust.bindInviter(substituted, people.bob!.publicIdentity().fingerprint(), FILE, "inv-1"), IdentityMismatch);
  });

  it("takes keys of a shared file from its first verified granter only", async () => {
    const { people, profile, trust, fingerprint } = setup();
    const [alice, carol] = [people.alice!, people.carol!];
    await profile.pin(alice.accountId, fingerprint(alice));
    await profile.pin(carol.accountId, fingerprint(carol));
    await trust.granter(alice.accountId, FILE); // the owner who shared it
    await trust.granter(alice.accountId, FILE);
    await assert.rejects(trust.granter(carol.accountId, FILE), Untrusted);
  });

  it("takes new keys of an owned file only from a rotating role it granted, never from a revoked one", async () => {
    const { people, profile, trust, fingerprint } = setup();
    const [alice, carol] = [people.alice!, people.carol!];
    await trust.store.ownFile(FILE);
    for (const k of [alice, carol]) await profile.pin(k.accountId, fingerprint(k));
    await assert.rejects(trust.granter(alice.accountId, FILE), Untrusted);
    await trust.store.granted(FILE, alice.accountId, true);
    await trust.store.granted(FILE, carol.accountId, false);
    await trust.granter(alice.accountId, FILE);
    await assert.rejects(trust.granter(carol.accountId, FILE), Untrusted);
    await trust.store.revoked(FILE, alice.accountId);
    await assert.rejects(trust.granter(alice.accountId, FILE), Untrusted);
  });
  it("keeps a revocation when an old invitation is bound late; a new invitation undoes it", async () => {
    const { people, trust, fingerprint } = setup();
    const bob = people.bob!;
    const bound = (invitationId: string) => ({
      accountId: bob.accountId, fingerprint: fingerprint(bob), fileId: FILE, role: "invitee" as const, invitationId,
    });
    await trust.store.madeInvitation(FILE, "old-invitation");
    await trust.store.revoked(FILE, bob.accountId);
    await trust.store.bind(bound("old-invitation")); // its proof checked only now
    assert.equal(await trust.store.isRevoked(FILE, bob.accountId), true);
    await trust.store.madeInvitation(FILE, "new-invitation");
    await trust.store.bind(bound("new-invitation"));
    assert.equal(await trust.store.isRevoked(FILE, bob.accountId), false);
  });
});

