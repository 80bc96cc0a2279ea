/**
 * NGAP act codes offered in session notes (Nomenclature générale des actes professionnels,
 * titre XIV, masseurs-kinésithérapeutes).
 *
 * A small list of suggestions, not a validator: a session note stores the act as written on
 * the feuille de soins ("AMK 8,5", as `SessionNote.acts` in libs/client), and the
 * practitioner may type any other code. Sources, checked on 30/11/2026:
 * - Décision UNCAM du 14 décembre 2023 (JORF n° 0032 du 8 février 2024), article 3: from
 *   22/02/2024 the letter-keys AMS and AMC are removed, AMK becomes "actes divers pratiqués
 *   par le masseur-kinésithérapeute" (bilans, balnéothérapie supplements), and TMK
 *   (télésoin), APM, ARL, DRA, NMI, PLL... are created (annexe 2 de la NGAP, "Lettres clés").
 * - NGAP titre XIV, chapitre I, section 1 (Décision UNCAM du 27 mai 2021): bilan
 *   ostéoarticulaire simple, coefficient 5 for one limb, 8,5 for two limbs or a limb and the
 *   trunk, 10 for the whole body.
 * - Avenant 7 (arrêté du 21 août 2023), FAQ of the SNMKR: balnéothérapie supplements
 *   AMK 2,5 and AMK 3,5 from 01/07/2025; letter-key value 2,21 € (métropole), 2,43 € (DROM).
 * AMS and AMC stay listed, marked as former codes, to read notes written before 22/02/2024.
 * The owner should complete the list from the current annexe 2 before relying on it.
 */

export interface NgapCode {
  /** The letter-key, as on the feuille de soins. */
  key: string;
  /** The coefficient, when the act has a fixed one (null: depends on the act). */
  coefficient: number | null;
  /** French label (the NGAP's wording, shortened). */
  label: string;
  /** A code no longer used for new treatments (kept to read older notes). */
  former?: true;
}

export const LETTER_KEY_VALUE_EUR = { metropole: 2.21, drom: 2.43 } as const;

export const NGAP_CODES: readonly NgapCode[] = [
  { key: "AMK", coefficient: 5, label: "Bilan ostéoarticulaire simple, un membre" },
  { key: "AMK", coefficient: 8.5, label: "Bilan ostéoarticulaire simple, deux membres ou un membre et le tronc" },
  { key: "AMK", coefficient: 10, label: "Bilan ostéoarticulaire simple, tout le corps" },
  { key: "AMK", coefficient: 2.5, label: "Supplément balnéothérapie" },
  { key: "AMK", coefficient: 3.5, label: "Supplément balnéothérapie (rééducation en piscine)" },
  { key: "TMK", coefficient: null, label: "Acte de télésoin" },
  { key: "APM", coefficient: null, label: "Rééducation des amputations" },
  { key: "ARL", coefficient: null, label: "Rééducation des affections respiratoires, maxillo-faciales et ORL" },
  { key: "DRA", coefficient: null, label: "Rééducation pour déviation du rachis" },
  { key: "NMI", coefficient: null, label: "Rééducation des affections neuromusculaires ou rhumatismales inflammatoires" },
  { key: "PLL", coefficient: null, label: "Soins palliatifs" },
  { key: "AMS", coefficient: 7.5, label: "Rééducation orthopédique et rhumatologique (avant le 22/02/2024)", former: true },
  { key: "AMC", coefficient: null, label: "Acte en établissement (avant le 22/02/2024)", former: true },
];

/** "AMK 8,5": the act as written on a feuille de soins (French decimal comma). */
export function actText(code: NgapCode): string {
  if (code.coefficient === null) return code.key;
  return `${code.key} ${String(code.coefficient).replace(".", ",")}`;
}

const ACT = /^\s*([A-Z]{2,4})\s*(\d{1,3}(?:[.,]\d{1,2})?)?\s*$/i;

/**
 * Normalises what a practitioner typed ("amk8.5", "AMK 8,5") to "AMK 8,5"; null when it does
 * not look like a letter-key and an optional coefficient. Unknown keys are accepted.
 */
export function normaliseAct(text: string): string | null {
  const match = ACT.exec(text);
  if (match === null) return null;
  const key = (match[1] as string).toUpperCase();
  const coefficient = match[2];
  return coefficient === undefined ? key : `${key} ${coefficient.replace(".", ",")}`;
}

/** Suggestions for a partial entry, current codes first. */
export function suggestActs(prefix: string): NgapCode[] {
  const wanted = prefix.trim().toUpperCase();
  return NGAP_CODES.filter((code) => actText(code).toUpperCase().startsWith(wanted)
    || code.label.toUpperCase().includes(wanted))
    .sort((a, b) => Number(a.former ?? false) - Number(b.former ?? false));
}
