import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatFrenchDate, parseFrenchDate, todayIso } from "../src/dates.ts";

describe("French dates (JJ/MM/AAAA)", () => {
  it("parses what people write", () => {
    assert.equal(parseFrenchDate("07/03/2019"), "2019-03-07");
    assert.equal(parseFrenchDate("7/3/2019"), "2019-03-07");
    assert.equal(parseFrenchDate(" 29.02.2024 "), "2024-02-29");
    assert.equal(parseFrenchDate("31-12-1999"), "1999-12-31");
  });
  it("refuses dates that do not exist or are written otherwise", () => {
    for (const text of ["29/02/2023", "31/04/2020", "00/01/2020", "12/13/2020", "2019-03-07",
      "03/07/19", "", "aa/bb/cccc", "01/01/1200"]) {
      assert.equal(parseFrenchDate(text), null, text);
    }
  });
  it("formats ISO dates back, round-tripping", () => {
    assert.equal(formatFrenchDate("2019-03-07"), "07/03/2019");
    assert.equal(formatFrenchDate("2019-03-07T10:00:00Z"), "07/03/2019");
    assert.equal(parseFrenchDate(formatFrenchDate("2024-02-29")), "2024-02-29");
    assert.throws(() => formatFrenchDate("2023-02-29"), RangeError);
    assert.throws(() => formatFrenchDate("07/03/2019"), RangeError);
  });
  it("gives today's date in local time", () => {
    assert.equal(todayIso(new Date(2026, 10, 30, 23, 59)), "2026-11-30");
  });
});
