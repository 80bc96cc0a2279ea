/**
 * The product's story in Debian's Chromium, as people do it, through the real gateway:
 * a practitioner signs up (recovery key shown once), turns on the second factor, logs out
 * and in again with it, creates a patient and an exercise programme, invites a parent
 * (code and QR code); the parent, on a phone-sized screen, accepts the code, creates an
 * account, reads the programme and sees who accessed the file; the practitioner revokes;
 * the parent's page is refused. Prints one JSON report for tests/web/test_web_flow.py.
 *
 * Usage: node tests/web/flow.mts <base-url> <chromium-path>
 */
import { createHmac } from "node:crypto";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

const [base, executablePath] = process.argv.slice(2) as [string, string];
const PASSPHRASE = "une phrase de passe assez longue pour Argon2";
export const PLANTED = { patient: "Jeanne Planteroux", exercise: "Pont fessier planté", motif: "Entorse plantée" };

/** RFC 6238 code of one time step (the authenticator app's job). */
function totpAt(secret: string, step: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = (mac[19] as number) & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1e6).padStart(6, "0");
}

/** The last step this flow sent: the gateway takes each step once. */
let lastStep = -1;

/** A code of the first step the gateway takes now that this flow has not used. The gateway
 * allows one step of drift either side of now, so three codes are at hand at once (the
 * previous step, unless it leaves the window within 5 s, the current and the next); a
 * fourth waits until its step is the next one. */
async function freshTotp(secret: string): Promise<string> {
  const now = Date.now();
  const current = Math.floor(now / 30000);
  const earliest = now % 30000 < 25000 ? current - 1 : current;
  const step = Math.max(earliest, lastStep + 1);
  const wait = (step - 1) * 30000 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait + 250));
  lastStep = step;
  return totpAt(secret, step);
}

const report: Record<string, unknown> = { violations: [], errors: [], policy_violations: [] };
const violations = report.violations as string[];
const errors = report.errors as string[];
const policyViolations = report.policy_violations as string[];

/** Console CSP messages, page errors, and every `securitypolicyviolation` event the page
 * fires (Trusted Types included: a string reaching a sink is one), from its first script on. */
async function watch(page: Page, who: string): Promise<void> {
  page.on("console", (m) => {
    if (/Content[- ]Security[- ]Policy|Trusted ?(Type|Script|HTML)/i.test(m.text())) violations.push(`${who}: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`${who}: ${e.message}`));
  await page.exposeFunction("ecrinPolicyViolation", (text: string) => { policyViolations.push(`${who}: ${text}`); });
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as unknown as { ecrinPolicyViolation(text: string): void }).ecrinPolicyViolation(
        `${e.effectiveDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber} ${e.sample}`);
    });
  });
}

/** The header's navigation as the person sees it: link and button names. */
async function navigation(page: Page): Promise<string[]> {
  return page.locator("header.site nav").getByRole("link").or(page.locator("header.site nav").getByRole("button"))
    .allTextContents();
}

/** What the service worker side holds: registrations and the shell caches. */
async function offlineState(page: Page): Promise<{ registrations: number; caches: string[]; local: number }> {
  return page.evaluate(async () => ({
    registrations: (await navigator.serviceWorker.getRegistrations()).length,
    caches: await caches.keys(),
    local: localStorage.length,
  }));
}

async function step<T>(page: Page, name: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw new Error(`${name} failed; the page said: ${(await page.textContent("main"))?.slice(0, 1500)}\n${error}`);
  }
}

async function signUp(page: Page, area: "pro" | "portail", email: string, role?: string): Promise<string> {
  await page.getByLabel("Adresse e-mail").fill(email);
  await page.getByLabel("Phrase de passe", { exact: false }).first().fill(PASSPHRASE);
  await page.getByLabel("Confirmer la phrase de passe").fill(PASSPHRASE);
  if (role) await page.getByLabel("Je suis").selectOption(role);
  await page.getByRole("button", { name: "Créer le compte" }).click();
  const recovery = await step(page, "sign-up", async () =>
    (await page.waitForSelector(".secret code", { timeout: 120000 })).textContent());
  await page.getByLabel("J'ai noté ma clé de secours").check();
  await page.getByRole("button", { name: "Continuer" }).click();
  await page.waitForURL(`${base}/${area}/connexion`);
  return recovery ?? "";
}

async function logIn(page: Page, email: string, secret?: string): Promise<void> {
  await page.getByLabel("Adresse e-mail").fill(email);
  await page.getByLabel("Phrase de passe").fill(PASSPHRASE);
  await page.getByRole("button", { name: "Se connecter" }).click();
  if (secret !== undefined) {
    await step(page, "second factor prompt", () => page.waitForSelector("input[name=totp]:visible", { timeout: 120000 }));
    await page.fill("input[name=totp]", await freshTotp(secret));
    await page.getByRole("button", { name: "Se connecter" }).click();
  }
}

/** With ECRIN_SCREENSHOTS=<folder> (tests/web/screenshots.py): the page as people see it,
 * at 1280×800 and, for the practitioner's pages, also at 390×844 (a phone). */
const SHOTS = process.env.ECRIN_SCREENSHOTS;
async function shot(page: Page, name: string): Promise<void> {
  if (!SHOTS) return;
  await page.evaluate(() => window.scrollTo(0, 0));
  const size = page.viewportSize();
  if (size !== null && size.width > 600) {
    await page.screenshot({ path: `${SHOTS}/${name}-desktop.png` });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${SHOTS}/${name}-phone.png` });
    await page.setViewportSize(size);
  } else {
    await page.screenshot({ path: `${SHOTS}/${name}-phone.png` });
  }
}

/** With ECRIN_MEASURE_MIB=<n>: the memory of a n MiB upload and download (docs/web.md). */
const MEASURE_MIB = Number(process.env.ECRIN_MEASURE_MIB ?? 0);

/** Resident memory of Chromium's renderer processes (the page and its workers), in MiB. */
function rendererRssMiB(): number {
  let kib = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "latin1");
      if (!cmdline.includes("--type=renderer")) continue;
      const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
      kib += Number(match?.[1] ?? 0);
    } catch {
      // the process ended meanwhile
    }
  }
  return Math.round(kib / 1024);
}

async function measureLarge(page: Page, fileId: string): Promise<Record<string, unknown>> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const heapMiB = async (): Promise<number> => {
    const { metrics } = await cdp.send("Performance.getMetrics");
    return Math.round((metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0) / 2 ** 20);
  };
  const path = join(mkdtempSync(join(tmpdir(), "ecrin-large-")), "large.png");
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const block = Buffer.alloc(1 << 20, 0x5a);
  writeFileSync(path, png);
  for (let i = 0; i < MEASURE_MIB; i++) appendFileSync(path, i === 0 ? block.subarray(png.length) : block);
  const sample = async (during: () => Promise<unknown>): Promise<Record<string, number>> => {
    const base = { heap: await heapMiB(), rss: rendererRssMiB() };
    let peakHeap = base.heap;
    let peakRss = base.rss;
    let done = false;
    const started = Date.now();
    const poll = (async () => {
      while (!done) {
        peakHeap = Math.max(peakHeap, await heapMiB());
        peakRss = Math.max(peakRss, rendererRssMiB());
        await page.keyboard.press("Shift"); // activity: the short idle lock must not fire
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    try {
      await during();
    } finally {
      done = true;
      await poll;
    }
    return { seconds: (Date.now() - started) / 1000, heap_before_mib: base.heap, heap_peak_mib: peakHeap,
      renderer_rss_before_mib: base.rss, renderer_rss_peak_mib: peakRss };
  };
  await page.evaluate((path) => { history.pushState(null, "", path); dispatchEvent(new PopStateEvent("popstate")); },
    `/pro/patients/${fileId}`);
  await page.getByLabel("Type de document").selectOption("imaging");
  await page.getByLabel("Fichier (PDF, JPEG ou PNG)").setInputFiles(path);
  const upload = await sample(async () => {
    await page.getByRole("button", { name: "Chiffrer et envoyer" }).click();
    await step(page, "large upload", () => page.waitForSelector("ul.records li:has-text('large.png')", { timeout: 900000 }));
  });
  const row = page.locator("ul.records li", { hasText: "large.png" });
  let size = 0;
  const download = await sample(async () => {
    const [file] = await Promise.all([page.waitForEvent("download", { timeout: 900000 }),
      row.getByRole("button", { name: "Télécharger" }).click()]);
    const saved = await file.path();
    size = saved ? statSync(saved).size : -1;
  });
  return { mib: MEASURE_MIB, upload, download, downloaded_bytes: size, expected_bytes: MEASURE_MIB * 2 ** 20 };
}

/** Every entry of the app's sealed IndexedDB store, as stored (key and sealed text). */
async function sealedState(page: Page): Promise<Record<string, string>> {
  return page.evaluate(async () => {
    // Opening a database that is not there would create it: look first.
    if (!(await indexedDB.databases()).some((db) => db.name === "ecrin-device")) return {};
    return new Promise<Record<string, string>>((resolve, reject) => {
      const open = indexedDB.open("ecrin-device");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        // Closed after reading: an open connection would hold up the device's erasure.
        if (!db.objectStoreNames.contains("sealed")) { db.close(); resolve({}); return; }
        const out: Record<string, string> = {};
        const cursor = db.transaction("sealed").objectStore("sealed").openCursor();
        cursor.onerror = () => reject(cursor.error);
        cursor.onsuccess = () => {
          const c = cursor.result;
          if (c === null) { db.close(); resolve(out); return; }
          out[String(c.key)] = String(c.value);
          c.continue();
        };
      };
    });
  });
}

async function main(): Promise<void> {
  const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  try {
    const desk = await (await browser.newContext({ locale: "fr-FR", viewport: { width: 1280, height: 800 } })).newPage();
    await watch(desk, "practitioner");
    const email = `kine-${Date.now()}@example.fr`;
    report.practitioner_email = email;
    report.passphrase = PASSPHRASE;

    await desk.goto(`${base}/pro/inscription`, { waitUntil: "networkidle" });
    await shot(desk, "signup");
    report.recovery_key_shape = /^ecrin-rk-/.test(await signUp(desk, "pro", email));
    await logIn(desk, email);
    await step(desk, "login", () => desk.waitForURL(`${base}/pro/patients`, { timeout: 120000 }));
    // Without a second factor the practitioner is kept off patient data: enrol one.
    await desk.getByRole("link", { name: "Sécurité du compte" }).click();
    await desk.getByRole("button", { name: "Activer le second facteur" }).click();
    const secret = (await step(desk, "totp", () => desk.waitForSelector(".totp-secret"))).textContent();
    report.totp_secret = await secret;
    await desk.getByLabel("Code du second facteur").fill(await freshTotp(report.totp_secret as string));
    await desk.getByRole("button", { name: "Confirmer" }).click();
    await step(desk, "totp confirm", () => desk.waitForSelector("text=Second facteur activé"));

    // A plain logout keeps the sealed device state (pins above all): the gateway's
    // Clear-Site-Data names the cache and cookies, not the storage.
    report.practitioner_nav = await navigation(desk);
    await desk.evaluate(() => localStorage.setItem("ecrin.locale", "fr"));
    report.idb_before_logout = await sealedState(desk);
    await desk.getByRole("button", { name: "Se déconnecter", exact: true }).click();
    await desk.waitForURL(`${base}/`);
    report.logout_notice = await desk.textContent("main .notice");
    await desk.waitForTimeout(500); // Clear-Site-Data is applied as the answer arrives
    report.idb_after_logout = await sealedState(desk);
    report.offline_after_logout = await offlineState(desk);
    await desk.goto(`${base}/pro/connexion`, { waitUntil: "networkidle" });
    await logIn(desk, email, report.totp_secret as string);
    await step(desk, "login with TOTP", () => desk.waitForURL(`${base}/pro/patients`, { timeout: 120000 }));
    report.totp_last_step = lastStep;
    report.idb_after_logout_relogin = await sealedState(desk);

    await desk.getByLabel("Nom et prénom").fill(PLANTED.patient);
    await desk.getByLabel("Date de naissance").fill("03/02/2015");
    await desk.getByRole("button", { name: "Créer le dossier" }).click();
    await step(desk, "create patient", () => desk.waitForURL(/\/pro\/patients\/[0-9a-f-]{36}$/, { timeout: 60000 }));
    report.file_id = new URL(desk.url()).pathname.split("/").pop();
    await desk.waitForFunction(() => document.querySelector("main h1")?.textContent?.startsWith("Dossier de"));
    report.patient_heading = await desk.textContent("main h1");

    await desk.getByText("Ajouter : Programme d'exercices").click();
    await desk.fill("input[name=ex1-name]", PLANTED.exercise);
    await desk.locator("details[open] form").getByRole("button", { name: "Enregistrer" }).click();
    await step(desk, "programme", () => desk.waitForSelector("ul.records li", { timeout: 60000 }));
    report.records_listed = await desk.textContent("ul.records");

    // A prescription (PDF), encrypted in the worker and uploaded; shared with the patient side.
    await desk.getByLabel("Type de document").selectOption("prescription");
    await desk.getByLabel("Fichier (PDF, JPEG ou PNG)").setInputFiles({ name: "ordonnance.pdf",
      mimeType: "application/pdf", buffer: Buffer.from(`%PDF-1.4\n% ${PLANTED.exercise}\n%%EOF\n`) });
    await desk.getByRole("button", { name: "Chiffrer et envoyer" }).click();
    await step(desk, "upload", () => desk.waitForSelector("ul.records li:has-text('ordonnance.pdf')", { timeout: 60000 }));
    report.upload_progress = await desk.getAttribute("progress", "value");
    report.records_listed = await desk.textContent("main section");
    await shot(desk, "patient");

    await desk.getByRole("link", { name: "Partage" }).click();
    await desk.waitForFunction(() => (document.querySelector("input[name=until]") as HTMLInputElement | null)?.value !== "");
    report.until_offered = await desk.inputValue("input[name=until]");
    await desk.getByRole("button", { name: "Créer l'invitation" }).click();
    const code = (await step(desk, "invite", () => desk.waitForSelector(".invitation code", { timeout: 120000 }))).textContent();
    const invitation = await code;
    report.invitation_code = invitation;
    report.invitation_qr = await desk.locator(".invitation svg.qr path").count();
    await shot(desk, "invitation");

    // The parent, on a phone.
    const phoneContext = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true,
      hasTouch: true, locale: "fr-FR" });
    const phone = await phoneContext.newPage();
    await watch(phone, "parent");
    await phone.goto(`${base}/portail`, { waitUntil: "networkidle" });
    await phone.getByRole("link", { name: "J'ai reçu une invitation" }).click();
    await phone.getByLabel("Code d'invitation").fill(invitation ?? "");
    await phone.getByRole("button", { name: "Accepter l'invitation" }).click();
    await phone.waitForURL(`${base}/portail/inscription`);
    const parentEmail = `parent-${Date.now()}@example.fr`;
    await signUp(phone, "portail", parentEmail, "representative");
    await logIn(phone, parentEmail);
    await step(phone, "redeem", () => phone.waitForURL(/\/portail\/dossiers\/[0-9a-f-]{36}$/, { timeout: 120000 }));
    await step(phone, "programme shown", () => phone.waitForSelector("article.program", { timeout: 60000 }));
    await step(phone, "audit shown", () => phone.waitForSelector("table tbody tr", { timeout: 60000 }));
    report.parent_program = await phone.textContent("article.program");
    report.parent_records = await phone.textContent("main section");
    // The document opens on the phone: downloaded, decrypted and verified in the browser.
    const [download] = await Promise.all([phone.waitForEvent("download", { timeout: 60000 }),
      phone.getByRole("button", { name: "Télécharger" }).click()]);
    const path = await download.path();
    report.parent_download_name = download.suggestedFilename();
    report.parent_download_text = path ? readFileSync(path, "latin1") : null;
    report.parent_audit_verdict = await phone.textContent("section:has(table) p");
    report.parent_audit_rows = await phone.locator("table tbody tr").count();
    await shot(phone, "portal-file");
    report.parent_nav = await navigation(phone);
    report.parent_scroll_width = await phone.evaluate(() => document.documentElement.scrollWidth);

    // The practitioner revokes the parent.
    // Shown again in the app (a reload would forget the in-memory session, by design).
    await desk.evaluate((path) => { history.pushState(null, "", path); dispatchEvent(new PopStateEvent("popstate")); },
      `/pro/patients/${report.file_id}/partage`);
    const parentRow = desk.locator("li", { hasText: "Parent (autorité parentale)" });
    await step(desk, "member list", () => parentRow.waitFor({ timeout: 60000 }));
    await parentRow.getByRole("button", { name: "Révoquer" }).click();
    await step(desk, "revoke", () => desk.waitForSelector("text=Accès révoqué", { timeout: 120000 }));

    // The parent's page, shown again in the app, is refused.
    // The sharing service tells the other services at once; their 0.5 s cache of access
    // answers is the fallback if that message were lost: wait it out, then show the page.
    await phone.waitForTimeout(1000);
    await phone.evaluate((path) => { history.pushState(null, "", path); dispatchEvent(new PopStateEvent("popstate")); },
      `/portail/dossiers/${report.file_id}`);
    await step(phone, "refused after revocation", () => phone.waitForSelector("main :text('Introuvable')", { timeout: 30000 }));
    report.parent_after_revoke = await phone.textContent("main");

    // F4: the device state outlives a reload, sealed. The practitioner's browser is reloaded
    // (memory gone: the login too) with a short idle lock, logs in again and goes on.
    report.idb_before = await sealedState(desk);
    await desk.evaluate(() => localStorage.setItem("ecrin.idleLockSeconds", "12"));
    await desk.goto(`${base}/pro/connexion`, { waitUntil: "networkidle" });
    await logIn(desk, email, report.totp_secret as string);
    await step(desk, "login after reload", () => desk.waitForURL(`${base}/pro/patients`, { timeout: 120000 }));
    report.totp_last_step = lastStep;
    report.idb_relogin = await sealedState(desk);

    // Patient search by name: blind-index tokens, so part of the name, any case or accent.
    await desk.getByRole("searchbox", { name: "Rechercher un patient" }).fill("planteroux");
    await desk.getByRole("button", { name: "Rechercher", exact: true }).click();
    const hit = desk.getByRole("link", { name: PLANTED.patient });
    await step(desk, "search", () => hit.waitFor({ timeout: 60000 }));
    await shot(desk, "patients");
    await desk.getByRole("searchbox", { name: "Rechercher un patient" }).fill("Nobody Else");
    await desk.getByRole("button", { name: "Rechercher", exact: true }).click();
    await step(desk, "search miss", () => desk.waitForSelector("text=Aucun patient", { timeout: 60000 }));
    report.search_miss = await desk.textContent("main section");
    await desk.getByRole("searchbox", { name: "Rechercher un patient" }).fill("planteroux");
    await desk.getByRole("button", { name: "Rechercher", exact: true }).click();
    await hit.click();
    await desk.waitForURL(/\/pro\/patients\/[0-9a-f-]{36}$/);

    // A session note with an NGAP act, then a bilan.
    await desk.getByText("Ajouter : Note de séance").click();
    await desk.getByLabel("Actes (NGAP)").fill("amk 8.5");
    await desk.getByLabel("Douleur (EVA, 0 à 10)").fill("4");
    await desk.locator("details[open] form").getByRole("button", { name: "Enregistrer" }).click();
    await step(desk, "session note", () => desk.waitForSelector("ul.records li:has-text('Note de séance')", { timeout: 60000 }));
    await desk.locator("details[open] summary").click();
    await desk.getByText("Ajouter : Bilan").click();
    await desk.getByLabel("Motif").fill(PLANTED.motif);
    await desk.locator("details[open] form").getByRole("button", { name: "Enregistrer" }).click();
    await step(desk, "bilan", () => desk.waitForSelector("ul.records li:has-text('Bilan')", { timeout: 60000 }));
    report.records_after_reload = await desk.textContent("main section");
    await shot(desk, "patient-notes");
    const bilan = desk.locator("ul.records li", { hasText: "Bilan" });
    await bilan.getByRole("button", { name: "Versions" }).click();
    await step(desk, "history", () => bilan.locator("ol.versions li").first().waitFor({ timeout: 60000 }));
    report.bilan_history = await bilan.locator("ol.versions").textContent();

    // The sharing page after the reload: the revoked parent is still revoked on this device.
    await desk.getByRole("link", { name: "Partage" }).click();
    await step(desk, "sharing after reload", () => desk.waitForSelector("h3:has-text('Invitations')", { timeout: 60000 }));
    report.sharing_after_reload = await desk.textContent("main");
    report.idb_after = await sealedState(desk);

    // The idle lock: no activity for the short delay set above, then the unlock page.
    await step(desk, "idle lock", () => desk.waitForURL(`${base}/pro/deverrouiller`, { timeout: 30000 }));
    report.idle_notice = await desk.textContent("main");
    await desk.getByLabel("Phrase de passe").fill(PASSPHRASE);
    await desk.getByRole("button", { name: "Déverrouiller" }).click();
    await step(desk, "unlock", () => desk.waitForURL(`${base}/pro/patients`, { timeout: 120000 }));
    report.unlocked_patients = await desk.textContent("main");
    if (MEASURE_MIB > 0) report.large = await measureLarge(desk, report.file_id as string);

    // A shared computer: log out and forget this device. Nothing of Écrin stays.
    report.offline_before_forget = await offlineState(desk);
    await desk.getByRole("button", { name: "Se déconnecter et oublier cet appareil" }).click();
    await desk.waitForURL(`${base}/`);
    report.forget_notice = await desk.textContent("main .notice");
    await desk.waitForTimeout(500);
    report.idb_after_forget = await sealedState(desk);
    report.offline_after_forget = await offlineState(desk);
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
