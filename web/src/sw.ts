/**
 * The service worker: makes the app installable and opens the shell offline.
 *
 * It caches the app shell only, the fixed list the build wrote into it (__ECRIN_SHELL__):
 * never an API response, never /docs or /openapi.json, never anything under /v1. Pages are
 * fetched from the network first (a new build is used as soon as it is online) and fall
 * back to the cached shell. Logout's `Clear-Site-Data: "storage"` removes this cache and
 * this worker.
 */
/// <reference lib="webworker" />

declare const __ECRIN_SHELL__: string[];
declare const __ECRIN_SHELL_ID__: string;

const sw = self as unknown as ServiceWorkerGlobalScope;
const CACHE = `ecrin-shell-${__ECRIN_SHELL_ID__}`;
const SHELL = new Set(__ECRIN_SHELL__);
const APP_PATHS = /^\/(?:pro|portail)(?:\/|$)|^\/$/;

sw.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([...SHELL])).then(() => sw.skipWaiting()));
});

sw.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(names
    .filter((name) => name.startsWith("ecrin-shell-") && name !== CACHE)
    .map((name) => caches.delete(name)))).then(() => sw.clients.claim()));
});

sw.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== sw.location.origin) return;
  if (request.mode === "navigate" && APP_PATHS.test(url.pathname)) {
    event.respondWith(fetch(request).catch(async () =>
      (await caches.match("/", { cacheName: CACHE })) ?? Response.error()));
    return;
  }
  if (SHELL.has(url.pathname) && url.pathname !== "/") {
    event.respondWith(caches.match(request, { cacheName: CACHE }).then((hit) => hit ?? fetch(request)));
  }
  // Anything else (the API above all) goes to the network untouched.
});
