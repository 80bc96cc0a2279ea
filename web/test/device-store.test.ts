import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { IdentityKeys } from "@ecrin/e2ee";
import { merge, SealedDeviceStore, type SealedBackend } from "../src/device-store.ts";

/** IndexedDB's stand-in: what the browser would keep, to inspect. */
function mapBackend(): SealedBackend & { saved: Map<string, string> } {
  const saved = new Map<string, string>();
  return {
    saved,
    async get(key) { return saved.get(key); },
    async put(key, sealed) { saved.set(key, sealed); },
    async delete(key) { saved.delete(key); },
  };
}

const FINGERPRINT = "ab".repeat(32);

describe("SealedDeviceStore", () => {
  it("keeps pins and high-water marks across a reload, sealed", async () => {
    const backend = mapBackend();
    const identity = IdentityKeys.generate(randomUUID());
    const before = new SealedDeviceStore(backend);
    await before.attach(identity);
    await before.write("pins.json", { someone: FINGERPRINT });
    await before.write("versions.json", { "record:1": 7 });
    await before.write("tokens.json", { access_token: "secret-token" });
    assert.deepEqual([...backend.saved.keys()].sort(),
      [`${identity.accountId}/pins.json`, `${identity.accountId}/versions.json`]);
    for (const sealed of backend.saved.values()) {
      assert.match(sealed, /^ecrin-ls1\./);
      assert.ok(!sealed.includes(FINGERPRINT) && !sealed.includes("record:1"));
    }
    const after = new SealedDeviceStore(backend); // the reload
    assert.equal(await after.read("pins.json"), undefined, "nothing before unlock");
    await after.write("versions.json", { "record:1": 2, "record:2": 1 }); // the login's own writes
    await after.attach(identity);
    assert.deepEqual(await after.read("pins.json"), { someone: FINGERPRINT });
    assert.deepEqual(await after.read("versions.json"), { "record:1": 7, "record:2": 1 });
    assert.equal(await after.read("tokens.json"), undefined);
  });

  it("refuses another account's or a moved document", async () => {
    const backend = mapBackend();
    const identity = IdentityKeys.generate(randomUUID());
    const store = new SealedDeviceStore(backend);
    await store.attach(identity);
    await store.write("pins.json", { someone: FINGERPRINT });
    await store.write("files.json", { f: "owned" });
    const pins = `${identity.accountId}/pins.json`;
    const files = `${identity.accountId}/files.json`;
    backend.saved.set(pins, backend.saved.get(files) as string);
    await assert.rejects(new SealedDeviceStore(backend).attach(identity), /another document/);
    const other = IdentityKeys.generate(identity.accountId); // same id, other keys
    backend.saved.delete(pins);
    await assert.rejects(new SealedDeviceStore(backend).attach(other));
  });

  it("writes nothing after detach", async () => {
    const backend = mapBackend();
    const store = new SealedDeviceStore(backend);
    await store.attach(IdentityKeys.generate(randomUUID()));
    store.detach();
    await store.write("pins.json", { someone: FINGERPRINT });
    assert.equal(backend.saved.size, 0);
  });

  it("merges: saved pins win, versions only rise", () => {
    assert.deepEqual(merge("pins.json", { a: "saved" }, { a: "new", b: "new" }), { a: "saved", b: "new" });
    assert.deepEqual(merge("versions.json", { a: 5, b: 1 }, { a: 3, b: 4 }), { a: 5, b: 4 });
  });
});
