/**
 * A history-API router: real paths (/pro/patients/…), no hash, so the gateway serves
 * index.html for every app path and the back button works.
 *
 * Route patterns are literal segments and `:name` parameters. Matching is pure (tested in
 * Node); `Router` adds the browser wiring: link clicks, popstate, focus on the new page's
 * heading for screen readers. Paths never carry a secret (invitation codes are typed or
 * scanned, never put in a URL).
 */

export type Params = Record<string, string>;

export interface Route<T> {
  pattern: string;
  value: T;
}

export interface Match<T> {
  value: T;
  params: Params;
}

function segments(path: string): string[] {
  return path.split("/").filter((part) => part !== "");
}

export function matchRoute<T>(routes: readonly Route<T>[], path: string): Match<T> | null {
  const wanted = segments(path.split("?")[0]?.split("#")[0] ?? "");
  for (const route of routes) {
    const pattern = segments(route.pattern);
    if (pattern.length !== wanted.length) continue;
    const params: Params = {};
    let ok = true;
    for (let i = 0; i < pattern.length; i += 1) {
      const expected = pattern[i] as string;
      const actual = wanted[i] as string;
      if (expected.startsWith(":")) {
        let decoded: string;
        try {
          decoded = decodeURIComponent(actual);
        } catch {
          ok = false;
          break;
        }
        params[expected.slice(1)] = decoded;
      } else if (expected !== actual) {
        ok = false;
        break;
      }
    }
    if (ok) return { value: route.value, params };
  }
  return null;
}

/** Builds a path from a pattern, encoding each parameter. */
export function pathFor(pattern: string, params: Params = {}): string {
  return `/${segments(pattern).map((part) => {
    if (!part.startsWith(":")) return part;
    const value = params[part.slice(1)];
    if (value === undefined) throw new Error(`missing parameter ${part}`);
    return encodeURIComponent(value);
  }).join("/")}`;
}

export type Render = (params: Params) => Promise<void> | void;

export class Router {
  #routes: Route<Render>[];
  #notFound: Render;

  constructor(routes: Route<Render>[], notFound: Render) {
    this.#routes = routes;
    this.#notFound = notFound;
  }

  start(): void {
    window.addEventListener("popstate", () => void this.render());
    document.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target.closest("a") : null;
      if (target === null || event.defaultPrevented || event.button !== 0
        || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
      if (target.target !== "" || target.hasAttribute("download")) return;
      const url = new URL(target.href, location.href);
      if (url.origin !== location.origin || !target.hasAttribute("data-route")) return;
      event.preventDefault();
      this.navigate(url.pathname);
    });
    // The first page keeps the browser's own focus order (skip link first).
    void this.render(false);
  }

  navigate(path: string, replace = false): void {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    void this.render();
  }

  async render(focus = true): Promise<void> {
    const match = matchRoute(this.#routes, location.pathname);
    await (match === null ? this.#notFound({}) : match.value(match.params));
    if (!focus) return;
    // Screen readers announce the new page: focus its heading.
    const heading = document.querySelector<HTMLElement>("main h1");
    if (heading !== null) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: false });
    }
  }
}
