/**
 * Blind indexes (mirrors `ecrin_e2ee.blind_index`): keyed tokens that let a practitioner
 * find a patient without the server learning the name or the INS.
 *
 * `token = b64(BLAKE2b(out=12, key=search_key, person=<field context>, normalised value))`.
 * `SearchKey.forOwner(keys) = KDF(owner Ed25519 seed, "ecrin-search-key")`.
 *
 * Names: NFKD, `œ æ ø ł đ ı` transliterated, combining marks removed, case-folded, every run
 * of spaces, hyphens, apostrophes, dots and underscores collapsed to one space, trimmed.
 * JavaScript has no `str.casefold`, no `unicodedata.combining` and another `\s`: the tables
 * of `_name_folding.ts` are generated from Python's `unicodedata`
 * (`scripts/gen_name_folding.py`), so that every character Python's Unicode version knows
 * normalises as in Python (`tests/e2ee_js/test_name_folding.py` checks each code point).
 * Characters assigned after that version may differ (JavaScript's NFKD and lower case are
 * newer).
 */

import { COMBINING, FOLDS, WHITESPACE_CLASS } from "./_name_folding.ts";
import { blake2b } from "./_sodium.ts";
import { SecretKey } from "./_secret.ts";
import { b64e, deriveKey, utf8 } from "./_wire.ts";
import { FormatError } from "./errors.ts";
import { IdentityKeys } from "./identity.ts";

// Python's `[\s\-\u2010-\u2015'\u2019._]+`, with Python's `\s`.
const SEPARATORS = new RegExp(`[${WHITESPACE_CLASS}\\-\u2010-\u2015'\u2019._]+`, "gu");
const NAME_CONTEXT = "ecrin-bi-name";
const INS_CONTEXT = "ecrin-bi-ins";
const BIRTH_CONTEXT = "ecrin-bi-birth";
const OWNER_CONTEXT = "ecrin-search-key";

const TRANSLITERATE: Record<string, string> = {
  "œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l",
  "đ": "d", "Đ": "d", "ı": "i",
};

/** `str.casefold()`: per character (case folding has no context; `toLowerCase` of a whole
 * string would make a final sigma), from the generated table where it differs from lower
 * case. */
function casefold(text: string): string {
  let out = "";
  for (const c of text) out += FOLDS.get(c.codePointAt(0)!) ?? c.toLowerCase();
  return out;
}

export function normaliseName(name: string): string {
  const decomposed = name.normalize("NFKD").replace(/[œŒæÆøØłŁđĐı]/g, (c) => TRANSLITERATE[c]!);
  const stripped = decomposed.replace(COMBINING, "");
  // Every Python whitespace became one space: Python's strip() is then one space each end.
  return casefold(stripped).replace(SEPARATORS, " ").replace(/^ /, "").replace(/ $/, "");
}

/** The 13-character NIR (without its key); throws {@link FormatError}. */
export function normaliseIns(ins: string): string {
  const cleaned = ins.replace(/[\s.-]/g, "").toUpperCase();
  if (!/^[12378]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$/.test(cleaned)) {
    throw new FormatError("INS must be 13 characters and a 2-digit key");
  }
  const body = cleaned.slice(0, 13), key = Number(cleaned.slice(13));
  const numeric = BigInt(body.replace("2A", "19").replace("2B", "18"));
  if (97n - (numeric % 97n) !== BigInt(key)) throw new FormatError("INS key does not match");
  return body;
}

/** The key behind a set of blind-index tokens. */
export class SearchKey extends SecretKey {
  static readonly TOKEN_SIZE = 12;

  static forOwner(owner: IdentityKeys): SearchKey {
    return new SearchKey(deriveKey(owner.signingKey.toBytes(), OWNER_CONTEXT));
  }

  private token(context: string, value: string): string {
    return b64e(blake2b(utf8(value), SearchKey.TOKEN_SIZE, this.toBytes(), utf8(context)));
  }

  /** Token of a family or given name (normalised first). */
  nameToken(name: string): string {
    const normalised = normaliseName(name);
    if (!normalised) throw new FormatError("name is empty after normalisation");
    return this.token(NAME_CONTEXT, normalised);
  }

  /** Token of an INS number (validated and normalised first). */
  insToken(ins: string): string {
    return this.token(INS_CONTEXT, normaliseIns(ins));
  }

  /** Token of a birth date given as `YYYY-MM-DD`. */
  birthDateToken(isoDate: string): string {
    const d = isoDate.trim();
    if (!/^\d{4}-\d{2}-\d{2}$/.test(d)) throw new FormatError("birth date must be YYYY-MM-DD");
    return this.token(BIRTH_CONTEXT, d);
  }
}
