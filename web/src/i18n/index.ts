/**
 * Translations: French first, English available. The choice is a preference, not a secret,
 * so it is the one thing the app keeps in localStorage.
 */
import { en } from "./en.ts";
import { fr, type MessageKey } from "./fr.ts";

export type Locale = "fr" | "en";
export type { MessageKey };

const dictionaries: Record<Locale, Record<MessageKey, string>> = { fr, en };
const STORAGE_KEY = "ecrin.locale";
let current: Locale = "fr";

/** `{name}` placeholders replaced by `vars`; a missing variable is left visible. */
export function translate(locale: Locale, key: MessageKey,
  vars: Record<string, string | number> = {}): string {
  // A key built from server data (a relationship the app does not know) shows as itself.
  const template = dictionaries[locale][key] ?? (key as string);
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in vars ? String(vars[name]) : whole);
}

/** Whether `key` names a message (keys built from server data: problem slugs). */
export function isMessageKey(key: string): key is MessageKey {
  return Object.hasOwn(dictionaries.fr, key);
}

export function t(key: MessageKey, vars: Record<string, string | number> = {}): string {
  return translate(current, key, vars);
}

export function locale(): Locale {
  return current;
}

export function setLocale(next: Locale): void {
  current = next;
  document.documentElement.lang = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // Storage refused (private mode): the choice lasts for this page only.
  }
}

export function loadLocale(): void {
  let saved: string | null;
  try {
    saved = localStorage.getItem(STORAGE_KEY);
  } catch {
    saved = null;
  }
  current = saved === "en" ? "en" : "fr";
  document.documentElement.lang = current;
}

export const LOCALES: readonly Locale[] = ["fr", "en"];
export { dictionaries as _dictionaries };
