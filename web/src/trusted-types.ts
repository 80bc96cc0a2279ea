/**
 * The app's one Trusted Types policy, "ecrin-worker" (the gateway's CSP requires Trusted
 * Types for scripts and allows this policy name only, once).
 *
 * Why: with `require-trusted-types-for 'script'` the browser refuses a plain string at every
 * DOM sink that can run code (innerHTML, script URLs, eval...). The app builds its DOM node
 * by node (dom.ts), so the only sinks it uses are the two worker URLs: the crypto worker the
 * build named (`assets/worker-<hash>.js`) and the service worker (`/sw.js`). The policy makes
 * exactly those two and throws for anything else; it has no `createHTML` nor `createScript`,
 * so an injected string can never become markup or code through it.
 */

declare const __ECRIN_WORKER_URL__: string;

/** A TrustedScriptURL (not in TypeScript's DOM types): the Worker and register() take it. */
export interface TrustedScriptUrl {
  toString(): string;
}

interface TrustedTypesFactory {
  createPolicy(name: string, rules: { createScriptURL(input: string): string }): {
    createScriptURL(input: string): TrustedScriptUrl;
  };
}

export const POLICY_NAME = "ecrin-worker";

/** The same-origin paths the policy accepts. */
export function allowedScriptPaths(workerUrl: string): Set<string> {
  return new Set([new URL(workerUrl, "https://app.invalid").pathname, "/sw.js"]);
}

function makePolicy(): ((url: string) => TrustedScriptUrl) {
  const allowed = allowedScriptPaths(__ECRIN_WORKER_URL__);
  const check = (input: string): string => {
    const url = new URL(input, location.origin);
    if (url.origin !== location.origin || !allowed.has(url.pathname) || url.search !== "" || url.hash !== "") {
      throw new TypeError(`${POLICY_NAME}: not a script URL of this app: ${input}`);
    }
    return url.href;
  };
  const factory = (globalThis as { trustedTypes?: TrustedTypesFactory }).trustedTypes;
  // A browser without Trusted Types takes the checked string as it is.
  if (factory === undefined) return check;
  const policy = factory.createPolicy(POLICY_NAME, { createScriptURL: check });
  return (url) => policy.createScriptURL(url);
}

let policy: ((url: string) => TrustedScriptUrl) | null = null;

/** The script URL of the crypto worker or the service worker, trusted; anything else throws. */
export function scriptUrl(url: string): TrustedScriptUrl {
  policy ??= makePolicy();
  return policy(url);
}
