import assert from "node:assert/strict";
import { describe, it } from "node:test";

// What the build defines and the page has: the worker's hashed URL, the origin.
const globals = globalThis as unknown as Record<string, unknown>;
globals.__ECRIN_WORKER_URL__ = "/assets/worker-ABC123.js";
globals.location = new URL("https://ecrin.example/pro/patients");

const { scriptUrl } = await import("../src/trusted-types.ts");

describe("the Trusted Types policy (ecrin-worker)", () => {
  it("makes the crypto worker's and the service worker's URLs", () => {
    assert.equal(String(scriptUrl("/assets/worker-ABC123.js")), "https://ecrin.example/assets/worker-ABC123.js");
    assert.equal(String(scriptUrl("/sw.js")), "https://ecrin.example/sw.js");
  });

  it("refuses any other script URL", () => {
    for (const url of ["/assets/main-ABC123.js", "https://evil.example/sw.js", "//evil.example/sw.js",
      "/sw.js?v=2", "/sw.js#x", "javascript:alert(1)", "data:text/javascript,alert(1)", "/assets/worker-OTHER.js"]) {
      assert.throws(() => scriptUrl(url), TypeError, url);
    }
  });

  it("uses the browser's factory when there is one, once, under its name", async () => {
    const made: string[] = [];
    globals.trustedTypes = {
      createPolicy(name: string, rules: { createScriptURL(input: string): string }) {
        made.push(name);
        return { createScriptURL: (input: string) => ({ trusted: rules.createScriptURL(input), toString() { return this.trusted; } }) };
      },
    };
    try {
      const fresh = await import(`../src/trusted-types.ts?fresh=${Date.now()}`) as typeof import("../src/trusted-types.ts");
      const url = fresh.scriptUrl("/sw.js");
      fresh.scriptUrl("/assets/worker-ABC123.js");
      assert.deepEqual(made, ["ecrin-worker"]);
      assert.equal(String(url), "https://ecrin.example/sw.js");
      assert.throws(() => fresh.scriptUrl("https://evil.example/x.js"), TypeError);
    } finally {
      delete globals.trustedTypes;
    }
  });
});
