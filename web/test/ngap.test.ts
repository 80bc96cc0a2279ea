import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { actText, NGAP_CODES, normaliseAct, suggestActs } from "../src/ngap.ts";

describe("NGAP act codes", () => {
  it("writes acts as on a feuille de soins", () => {
    assert.equal(actText({ key: "AMK", coefficient: 8.5, label: "" }), "AMK 8,5");
    assert.equal(actText({ key: "TMK", coefficient: null, label: "" }), "TMK");
  });
  it("normalises what a practitioner types, and refuses what is not a code", () => {
    assert.equal(normaliseAct("amk8.5"), "AMK 8,5");
    assert.equal(normaliseAct(" AMK 10 "), "AMK 10");
    assert.equal(normaliseAct("RAO 8,1"), "RAO 8,1");
    assert.equal(normaliseAct("DRA"), "DRA");
    assert.equal(normaliseAct("8.5"), null);
    assert.equal(normaliseAct("AMK 8.5.1"), null);
    assert.equal(normaliseAct("<script>"), null);
  });
  it("offers current codes before former ones", () => {
    const found = suggestActs("AM");
    assert.ok(found.length >= 3);
    const firstFormer = found.findIndex((c) => c.former);
    assert.ok(firstFormer > 0 && found.slice(firstFormer).every((c) => c.former));
  });
  it("keeps every code short enough for SessionNote.acts (40 characters)", () => {
    for (const code of NGAP_CODES) assert.ok(actText(code).length <= 40);
  });
});
