/**
 * What `Records` needs of a client, over a fake server (`fetch`): an in-memory profile, the
 * device's own identity as its directory entry, no retries.
 */

import type { IdentityKeys } from "../../src/identity.ts";
import { type Fetch, GatewayTransport, inlineSlowCrypto, MemoryStore, Profile, type SlowCrypto } from "../../src/client/index.ts";

export function fakeClient(me: IdentityKeys, fetch: Fetch, slow: SlowCrypto = inlineSlowCrypto) {
  return {
    profile: new Profile(new MemoryStore()), slow, kdfProfile: "insecure-test" as const,
    transport: new GatewayTransport("https://ecrin.test", {
      tokens: { access_token: "a", refresh_token: "r", session_id: "s" }, fetch, onTokens: async () => undefined,
    }),
    retrying: <T>(call: () => Promise<T>) => call(),
    getDirectory: async () => me.publicIdentity(), directoryIdentity: async () => me.publicIdentity(),
  };
}
