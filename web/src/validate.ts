/** Checks the screens run before calling the SDK (which checks again: these are for people). */
import { parseFrenchDate } from "./dates.ts";

export const MIN_PASSPHRASE = 12;

export function validEmail(text: string): boolean {
  return /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(text.trim()) && text.length <= 254;
}

/** The INS (NIR) as libs/e2ee's normalise_ins checks it: 13 characters and the 97-key. */
export function validIns(text: string): boolean {
  const cleaned = text.replace(/[\s.-]/g, "").toUpperCase();
  if (!/^[12378]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$/.test(cleaned)) return false;
  const body = cleaned.slice(0, 13).replace("2A", "19").replace("2B", "18");
  return 97 - (Number(body) % 97) === Number(cleaned.slice(13));
}

/** A French date field's ISO value, or null. */
export function isoDate(text: string): string | null {
  return parseFrenchDate(text);
}

export function wholeNumber(text: string, min: number, max: number): number | null {
  if (!/^\s*\d+\s*$/.test(text)) return null;
  const value = Number(text);
  return value >= min && value <= max ? value : null;
}
