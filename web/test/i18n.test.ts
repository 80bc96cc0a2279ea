import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { en } from "../src/i18n/en.ts";
import { fr } from "../src/i18n/fr.ts";
import { translate } from "../src/i18n/index.ts";

describe("translations", () => {
  it("has the same keys and placeholders in French and English", () => {
    assert.deepEqual(Object.keys(en).sort(), Object.keys(fr).sort());
    const placeholders = (text: string) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const key of Object.keys(fr) as (keyof typeof fr)[]) {
      assert.deepEqual(placeholders(en[key]), placeholders(fr[key]), key);
      assert.ok(en[key].trim() !== "" && fr[key].trim() !== "", key);
    }
  });
  it("fills placeholders and leaves unknown ones visible", () => {
    assert.equal(translate("fr", "patients.born", { date: "07/03/2019" }), "né(e) le 07/03/2019");
    assert.equal(translate("en", "patients.born"), "born {date}");
  });
});
