/**
 * The frame around every page (header, navigation, main landmark) and the session state:
 * one key store for the tab, locked after 15 minutes without activity (or less: see
 * `idleLockMs`) and on logout.
 */
import { clear, h, type Child } from "./dom.ts";
import { locale, setLocale, t, type MessageKey } from "./i18n/index.ts";
import { IDLE_LOCK_MS, idleLockMs, KeyStore } from "./keystore.ts";
import * as sdk from "./sdk.ts";

export { IDLE_LOCK_MS };
/** localStorage key of a shorter lock delay, in seconds (a shared computer, the browser tests). */
export const IDLE_SETTING = "ecrin.idleLockSeconds";

function storedIdleSetting(): string | null {
  try {
    return localStorage.getItem(IDLE_SETTING);
  } catch {
    return null; // storage disabled: the default applies
  }
}

export const keys = new KeyStore<sdk.UnlockedSession>(idleLockMs(storedIdleSetting()));

let notice: MessageKey | null = null;
let navigate: (path: string, replace?: boolean) => void = (path) => location.assign(path);
let rerender: () => void = () => undefined;

export function setNavigation(go: (path: string, replace?: boolean) => void, again: () => void): void {
  navigate = go;
  rerender = again;
}

export function go(path: string, replace = false): void {
  navigate(path, replace);
}

/** A one-shot message shown on the next page (after a lock or a logout). */
export function flash(key: MessageKey): void {
  notice = key;
}

export function link(path: string, label: MessageKey | string, props: Record<string, string> = {}
): HTMLAnchorElement {
  const text = label.includes(".") && !label.includes(" ") ? t(label as MessageKey) : label;
  return h("a", { href: path, "data-route": true, ...props }, text);
}

/**
 * Plain logout keeps this browser's sealed device state (pins, bindings, rollback marks:
 * sealed under the identity, useless without the passphrase), so the trust rule does not
 * restart from first use at every login; `forgetDevice` (a shared computer) erases it too,
 * with the service worker, its cache and the preferences (docs/web.md).
 */
export async function logout(forgetDevice = false): Promise<void> {
  let forgotten = forgetDevice;
  try {
    await sdk.logout(forgetDevice);
  } catch (error) {
    if (!forgetDevice) throw error;
    forgotten = false; // said on the next page: the person must not believe it was done
  } finally {
    keys.lock("logout");
    flash(forgotten ? "session.forgotten" : forgetDevice ? "session.forgetFailed" : "session.loggedOut");
    go("/", true);
  }
}

/** Where an account of this role lives: the workspace, or the portal (patient, parent). */
export function areaOf(role: sdk.Role): "pro" | "portail" {
  return role === "practitioner" || role === "staff" ? "pro" : "portail";
}

/** The unlock page of the area on screen (the keys, and so the role, are gone by then). */
function unlockPath(): string {
  return location.pathname.startsWith("/portail") ? "/portail/deverrouiller" : "/pro/deverrouiller";
}

/** Each role sees its own navigation only: a parent is never offered the workspace. */
function header(): HTMLElement {
  const items: Child[] = [];
  if (keys.unlocked) {
    const area = areaOf(keys.get().role);
    items.push(area === "pro"
      ? h("li", {}, link("/pro/patients", "nav.patients"))
      : h("li", {}, link("/portail/dossiers", "nav.files")));
    items.push(h("li", {}, link(`/${area}/securite`, "nav.settings")));
    items.push(h("li", {}, h("button", { type: "button", class: "link",
      onclick: () => { keys.lock("manual"); go(`/${area}/deverrouiller`); } }, t("nav.lock"))));
    items.push(h("li", {}, h("button", { type: "button", class: "link",
      onclick: () => void logout() }, t("nav.logout"))));
    items.push(h("li", {}, h("button", { type: "button", class: "link",
      onclick: () => void logout(true) }, t("nav.forget"))));
  } else {
    items.push(h("li", {}, link("/", "nav.home")), h("li", {}, link("/pro", "nav.pro")),
      h("li", {}, link("/portail", "nav.portal")));
  }
  const other = locale() === "fr" ? "en" : "fr";
  items.push(h("li", {}, h("button", {
    type: "button", class: "link", lang: other,
    onclick: () => { setLocale(other); rerender(); },
  }, t("nav.language"))));
  return h("header", { class: "site" },
    h("a", { href: "/", "data-route": true, class: "brand" }, t("app.name")),
    h("nav", { "aria-label": t("nav.main") }, h("ul", {}, ...items)));
}

/** Replaces the page: header, then <main> with the title as its only h1. */
export function page(title: string, ...content: Child[]): HTMLElement {
  const root = document.getElementById("app");
  if (root === null) throw new Error("no #app");
  clear(root);
  document.title = `${title} · ${t("app.name")}`;
  const message = notice === null ? null
    : h("p", { class: "notice", role: "status" }, t(notice));
  notice = null;
  const main = h("main", { id: "main", tabindex: -1 }, h("h1", { tabindex: -1 }, title), message,
    ...content);
  root.append(header(), main);
  return main;
}

export function section(title: string, ...content: Child[]): HTMLElement {
  const id = `s-${Math.random().toString(36).slice(2, 8)}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...content);
}

/** Practitioner pages need unlocked keys: otherwise, to the login page. */
export function requireUnlocked(): boolean {
  if (keys.unlocked) return true;
  go(location.pathname.startsWith("/portail") ? "/portail/connexion" : "/pro/connexion", true);
  return false;
}

export function watchActivity(): void {
  for (const type of ["pointerdown", "keydown", "scroll"]) {
    window.addEventListener(type, () => keys.touch(), { passive: true });
  }
  keys.onLock((reason) => {
    if (reason === "idle") {
      flash("session.locked");
      go(unlockPath(), true);
    }
  });
}
