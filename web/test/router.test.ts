import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { matchRoute, pathFor } from "../src/router.ts";

const routes = [
  { pattern: "/", value: "home" },
  { pattern: "/pro/patients", value: "patients" },
  { pattern: "/pro/patients/:id", value: "patient" },
  { pattern: "/pro/patients/:id/partage", value: "sharing" },
];

describe("router", () => {
  it("matches literal paths and parameters", () => {
    assert.deepEqual(matchRoute(routes, "/"), { value: "home", params: {} });
    assert.deepEqual(matchRoute(routes, "/pro/patients/"), { value: "patients", params: {} });
    assert.deepEqual(matchRoute(routes, "/pro/patients/a%20b"), { value: "patient", params: { id: "a b" } });
    assert.deepEqual(matchRoute(routes, "/pro/patients/x/partage?y=1"),
      { value: "sharing", params: { id: "x" } });
  });
  it("answers null for unknown paths and malformed escapes", () => {
    assert.equal(matchRoute(routes, "/pro/nope"), null);
    assert.equal(matchRoute(routes, "/pro/patients/%E0%A4%A"), null);
    assert.equal(matchRoute(routes, "/pro/patients/x/partage/extra"), null);
  });
  it("builds paths with encoded parameters", () => {
    assert.equal(pathFor("/pro/patients/:id", { id: "a/b" }), "/pro/patients/a%2Fb");
    assert.throws(() => pathFor("/pro/patients/:id"));
  });
});
