/**
 * The web app's entry point: routes, language, inactivity lock, service worker.
 * Practitioner pages live under /pro, the portal under /portail (the gateway serves
 * index.html for both prefixes and for /).
 */
import { loadLocale } from "./i18n/index.ts";
import { acceptPage, portalHome, sharedFilePage, sharedFilesPage } from "./pages/portal.ts";
import { loginPage, signupPage, unlockPage } from "./pages/account.ts";
import { home, notFound } from "./pages/home.ts";
import { patientPage } from "./pages/patient.ts";
import { patientsPage } from "./pages/patients.ts";
import { auditPage, sharingPage } from "./pages/sharing.ts";
import { settingsPage } from "./pages/settings.ts";
import { type Render, type Route, Router } from "./router.ts";
import { go, keys, setNavigation, watchActivity } from "./shell.ts";
import { scriptUrl } from "./trusted-types.ts";

export const ROUTES: Route<Render>[] = [
  { pattern: "/", value: home },
  { pattern: "/pro", value: () => go(keys.unlocked ? "/pro/patients" : "/pro/connexion", true) },
  { pattern: "/pro/inscription", value: () => signupPage("pro") },
  { pattern: "/pro/connexion", value: () => loginPage("pro") },
  { pattern: "/pro/deverrouiller", value: () => unlockPage("pro") },
  { pattern: "/pro/patients", value: patientsPage },
  { pattern: "/pro/patients/:id", value: patientPage },
  { pattern: "/pro/patients/:id/partage", value: sharingPage },
  { pattern: "/pro/patients/:id/audit", value: auditPage },
  { pattern: "/pro/securite", value: settingsPage },
  { pattern: "/portail", value: portalHome },
  { pattern: "/portail/invitation", value: acceptPage },
  { pattern: "/portail/inscription", value: () => signupPage("portail") },
  { pattern: "/portail/connexion", value: () => loginPage("portail") },
  { pattern: "/portail/deverrouiller", value: () => unlockPage("portail") },
  { pattern: "/portail/securite", value: settingsPage },
  { pattern: "/portail/dossiers", value: sharedFilesPage },
  { pattern: "/portail/dossiers/:id", value: sharedFilePage },
];

function start(): void {
  loadLocale();
  const router = new Router(ROUTES, notFound);
  setNavigation((path, replace) => router.navigate(path, replace), () => void router.render());
  watchActivity();
  router.start();
  if ("serviceWorker" in navigator) {
    // The worker caches the app shell only (sw.ts); a failure leaves the app online-only.
    // register() is a Trusted Types sink: the URL comes from the app's policy.
    navigator.serviceWorker.register(scriptUrl("/sw.js") as string, { scope: "/" }).catch(() => undefined);
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
