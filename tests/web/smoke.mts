/**
 * Drives Debian's Chromium (playwright-core, no browser download) through the web app that
 * the real gateway serves, and prints one JSON report on stdout for tests/web/test_web_smoke.py
 * to judge. It only observes and records; the assertions live in the Python test.
 *
 * Usage: node tests/web/smoke.mts <base-url> <chromium-path>
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { chromium, type Page } from "playwright-core";

const require = createRequire(import.meta.url);
const [base, executablePath] = process.argv.slice(2) as [string, string];
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

/** The app's main pages reachable without an SDK session. */
const PAGES = ["/", "/pro/connexion", "/pro/inscription", "/pro/deverrouiller", "/portail",
  "/portail/invitation", "/portail/inscription", "/portail/connexion", "/pro/nulle-part"];

interface Report {
  violations: string[];
  provoked_violations: string[];
  failed_responses: string[];
  console_errors: string[];
  pages: Record<string, { title: string; h1: string; axe: { id: string; impact: string; nodes: number }[] }>;
  inline_script_ran: boolean | null;
  inline_script_violation: boolean;
  trusted_types?: Record<string, boolean | string[]>;
  trusted_types_violations?: string[];
  keyboard: Record<string, string | boolean>;
  form: Record<string, string | boolean | null>;
  language: Record<string, string>;
  phone: Record<string, number | string>;
  service_worker: { registered: boolean; cached: string[] };
  docs: { operations: number; external_requests: string[] };
  requests_elsewhere: string[];
}

const report: Report = {
  violations: [], provoked_violations: [], failed_responses: [], console_errors: [], pages: {}, inline_script_ran: null,
  inline_script_violation: false, keyboard: {}, form: {}, language: {}, phone: {},
  service_worker: { registered: false, cached: [] }, docs: { operations: 0, external_requests: [] },
  requests_elsewhere: [],
};

function watch(page: Page): void {
  page.on("console", (message) => {
    const text = message.text();
    if (/Content[- ]Security[- ]Policy|Trusted ?(Type|Script|HTML)/i.test(text)) report.violations.push(text);
    else if (message.type() === "error") report.console_errors.push(text);
  });
  page.on("pageerror", (error) => report.console_errors.push(`pageerror: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) report.failed_responses.push(`${response.status()} ${response.url()}`);
  });
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.origin !== new URL(base).origin && url.protocol !== "data:" && url.protocol !== "blob:") {
      report.requests_elsewhere.push(request.url());
    }
  });
}

async function axe(page: Page): Promise<{ id: string; impact: string; nodes: number }[]> {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern: the app
  // itself stays under its real policy.
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const run = (globalThis as unknown as { axe: { run: (ctx: Document, o: object) => Promise<{
      violations: { id: string; impact: string; nodes: unknown[] }[] }> } }).axe.run;
    const result = await run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
}

async function focusedText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (el === null) return "";
    const label = el.id ? document.querySelector(`label[for="${el.id}"]`)?.textContent : null;
    return `${el.tagName.toLowerCase()}:${(label ?? el.textContent ?? "").trim().slice(0, 60)}`;
  });
}

async function main(): Promise<void> {
  const browser = await chromium.launch({ executablePath, headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  try {
    const context = await browser.newContext({ locale: "fr-FR" });
    const page = await context.newPage();
    watch(page);

    for (const path of PAGES) {
      await page.goto(base + path, { waitUntil: "networkidle" });
      await page.waitForSelector("main h1");
      report.pages[path] = {
        title: await page.title(),
        h1: (await page.textContent("main h1")) ?? "",
        axe: await axe(page),
      };
    }

    // Trusted Types: on the app's pages a string reaches no script sink, and no other
    // policy can be made to launder one; the browser says why each time.
    await page.goto(`${base}/`, { waitUntil: "networkidle" });
    const before = report.violations.length;
    report.trusted_types = await page.evaluate(() => {
      const directives: string[] = [];
      document.addEventListener("securitypolicyviolation", (e) => directives.push(e.effectiveDirective));
      const threw = (action: () => void): boolean => {
        try {
          action();
          return false;
        } catch (error) {
          return error instanceof TypeError;
        }
      };
      const script = document.createElement("script");
      const factory = (globalThis as unknown as { trustedTypes: { createPolicy(name: string, rules: object): unknown } })
        .trustedTypes;
      const out = {
        script_text_threw: threw(() => { script.textContent = "window.__inlineRan = true"; }),
        inner_html_threw: threw(() => { document.body.insertAdjacentHTML("beforeend", "<img src=x onerror=alert(1)>"); }),
        worker_url_threw: threw(() => new Worker("/sw.js")),
        rogue_policy_threw: threw(() => factory.createPolicy("rogue", { createScript: (s: string) => s })),
        second_app_policy_threw: threw(() => factory.createPolicy("ecrin-worker", {})),
        directives,
      };
      return new Promise<typeof out>((resolve) => setTimeout(() => resolve(out), 100));
    });
    report.trusted_types_violations = report.violations.splice(before);

    // CSP is enforced: an injected inline script does not run, and the browser says why. On
    // /docs, whose policy is the app's without Trusted Types (which would stop it earlier).
    await page.goto(`${base}/docs`, { waitUntil: "networkidle" });
    const beforeInline = report.violations.length;
    await page.evaluate(() => {
      document.addEventListener("securitypolicyviolation", () => {
        (globalThis as { __violation?: boolean }).__violation = true;
      });
      const script = document.createElement("script");
      script.textContent = "window.__inlineRan = true";
      document.head.append(script);
    });
    await page.waitForTimeout(200);
    report.inline_script_ran = await page.evaluate(() =>
      (globalThis as { __inlineRan?: boolean }).__inlineRan === true);
    report.inline_script_violation = await page.evaluate(() =>
      (globalThis as { __violation?: boolean }).__violation === true);
    // That violation was provoked on purpose: set it apart from the app's own.
    report.provoked_violations = report.violations.splice(beforeInline);

    // Keyboard: skip link first, then into the navigation, Enter follows a link.
    await page.goto(`${base}/`, { waitUntil: "networkidle" });
    await page.keyboard.press("Tab");
    report.keyboard.first_tab = await focusedText(page);
    await page.keyboard.press("Enter");
    report.keyboard.after_skip = await page.evaluate(() => location.hash);
    await page.goto(`${base}/`, { waitUntil: "networkidle" });
    for (let i = 0; i < 15; i += 1) {
      await page.keyboard.press("Tab");
      if ((await focusedText(page)) === "a:Espace praticien") break;
    }
    report.keyboard.reached_nav_link = (await focusedText(page)) === "a:Espace praticien";
    await page.keyboard.press("Enter");
    await page.waitForURL(`${base}/pro/connexion`);
    report.keyboard.path_after_enter = new URL(page.url()).pathname;
    report.keyboard.focus_after_navigation = await focusedText(page);

    // A form driven by keyboard only: empty submit shows a focused error summary.
    await page.goto(`${base}/pro/inscription`, { waitUntil: "networkidle" });
    await page.focus("#main h1");
    await page.keyboard.press("Tab");
    report.form.first_field = await focusedText(page);
    await page.keyboard.type("pas-une-adresse");
    await page.keyboard.press("Tab");
    await page.keyboard.type("courte");
    await page.keyboard.press("Enter");
    await page.waitForSelector(".error-summary:not([hidden])");
    report.form.focus_after_submit = await page.evaluate(() =>
      document.activeElement?.classList.contains("error-summary") ?? false);
    report.form.summary_role = await page.getAttribute(".error-summary", "role");
    // The confirmation was left empty: that field is marked and described by its error.
    report.form.confirm_invalid = await page.getAttribute("input[name=confirm]", "aria-invalid");
    report.form.confirm_described_by = await page.getAttribute("input[name=confirm]", "aria-describedby");
    // English on request, French by default.
    await page.goto(`${base}/`, { waitUntil: "networkidle" });
    report.language.default_lang = await page.evaluate(() => document.documentElement.lang);
    await page.getByRole("button", { name: "English" }).click();
    report.language.switched_h1 = (await page.textContent("main h1")) ?? "";
    report.language.switched_lang = await page.evaluate(() => document.documentElement.lang);
    await page.getByRole("button", { name: "Français" }).click();

    // Service worker: registered, caching the shell only.
    report.service_worker.registered = await page.evaluate(async () => {
      const registration = await Promise.race([navigator.serviceWorker.ready,
        new Promise((resolve) => setTimeout(() => resolve(null), 5000))]);
      return registration !== null;
    });
    await page.waitForTimeout(500);
    report.service_worker.cached = await page.evaluate(async () => {
      const urls: string[] = [];
      for (const name of await caches.keys()) {
        for (const request of await (await caches.open(name)).keys()) urls.push(new URL(request.url).pathname);
      }
      return urls.sort();
    });
    await context.close();

    // Phone: the portal fits a phone's width and keeps its axe score.
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 },
      deviceScaleFactor: 3, isMobile: true, hasTouch: true, locale: "fr-FR" });
    const mobile = await phone.newPage();
    watch(mobile);
    await mobile.goto(`${base}/portail/invitation`, { waitUntil: "networkidle" });
    report.phone.scroll_width = await mobile.evaluate(() => document.documentElement.scrollWidth);
    report.phone.viewport_width = await mobile.evaluate(() => window.innerWidth);
    report.phone.axe_serious = (await axe(mobile)).filter((v) =>
      v.impact === "serious" || v.impact === "critical").map((v) => v.id).join(",");
    await phone.close();

    // /docs: Swagger UI from this origin only, rendering the merged document.
    const docsContext = await browser.newContext();
    const docs = await docsContext.newPage();
    watch(docs);
    docs.on("request", (request) => {
      if (new URL(request.url()).origin !== new URL(base).origin && !request.url().startsWith("data:")) {
        report.docs.external_requests.push(request.url());
      }
    });
    await docs.goto(`${base}/docs`, { waitUntil: "networkidle" });
    await docs.waitForSelector(".opblock", { timeout: 20000 });
    report.docs.operations = await docs.locator(".opblock").count();
    await docsContext.close();
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
