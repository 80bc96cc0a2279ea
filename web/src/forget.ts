/**
 * "Se déconnecter et oublier cet appareil" (a shared computer): what Écrin left in this
 * browser goes — the sealed device state (IndexedDB), the service worker and its shell
 * cache, the preferences in localStorage. The gateway's `Clear-Site-Data: "storage"` on that
 * logout does the same; doing it here too covers a session that had already ended (no
 * header then) and a browser without Clear-Site-Data. Each step is tried even if another
 * fails; the first failure is thrown at the end, so the page can say so.
 */
import { eraseDeviceState } from "./device-store.ts";

export async function forgetThisDevice(): Promise<void> {
  const steps: Promise<unknown>[] = [eraseDeviceState()];
  if ("caches" in globalThis) {
    steps.push(caches.keys().then((names) => Promise.all(names
      .filter((name) => name.startsWith("ecrin-shell-")).map((name) => caches.delete(name)))));
  }
  if ("serviceWorker" in navigator) {
    steps.push(navigator.serviceWorker.getRegistrations().then((registrations) =>
      Promise.all(registrations.map((r) => r.unregister()))));
  }
  try {
    localStorage.clear();
  } catch {
    // storage disabled: nothing was kept there
  }
  const failed = (await Promise.allSettled(steps)).find((r) => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;
}
