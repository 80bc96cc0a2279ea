/**
 * A document upload in Debian's Chromium whose connection drops once, mid-way: the page
 * resumes it (the SDK asks the server where it stands) instead of starting over, and the
 * progress bar only ever shows what the server acknowledged.
 *
 * The browser talks to the gateway through tests/support/cutting_proxy.py, driven by
 * tests/web/test_web_resume.py: this script prints `READY` when the document is chosen and
 * waits for a line on stdin (the proxy is armed) before it clicks "Chiffrer et envoyer".
 * Prints one JSON report last.
 *
 * Usage: node tests/web/resume.mts <base-url> <chromium-path> <MiB>
 */
import { createHash, createHmac } from "node:crypto";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium, type Page } from "playwright-core";

const [base, executablePath, mib] = process.argv.slice(2) as [string, string, string];
const PASSPHRASE = "une phrase de passe assez longue pour Argon2";
const report: Record<string, unknown> = { errors: [] };

function totp(secret: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = (mac[19] as number) & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1e6).padStart(6, "0");
}

async function step<T>(page: Page, name: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw new Error(`${name} failed; the page said: ${(await page.textContent("main"))?.slice(0, 500)}\n${error}`);
  }
}

/** Resident memory of Chromium's renderer processes (the page and its worker), in MiB. */
function rendererRssMiB(): number {
  let kib = 0;
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, "latin1").includes("--type=renderer")) continue;
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "latin1"))?.[1] ?? 0);
    } catch {
      // the process ended meanwhile
    }
  }
  return Math.round(kib / 1024);
}

/** The next line on stdin: the test armed the proxy. */
async function waitForGo(): Promise<void> {
  const lines = createInterface({ input: process.stdin });
  for await (const _ of lines) break;
  lines.close();
}

async function main(): Promise<void> {
  const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
  try {
    const page = await (await browser.newContext({ locale: "fr-FR", viewport: { width: 1280, height: 800 } })).newPage();
    page.on("pageerror", (e) => (report.errors as string[]).push(e.message));
    const email = `resume-${Date.now()}@example.fr`;
    await page.goto(`${base}/pro/inscription`, { waitUntil: "networkidle" });
    await page.getByLabel("Adresse e-mail").fill(email);
    await page.getByLabel("Phrase de passe", { exact: false }).first().fill(PASSPHRASE);
    await page.getByLabel("Confirmer la phrase de passe").fill(PASSPHRASE);
    await page.getByRole("button", { name: "Créer le compte" }).click();
    await step(page, "sign-up", () => page.waitForSelector(".secret code", { timeout: 120000 }));
    await page.getByLabel("J'ai noté ma clé de secours").check();
    await page.getByRole("button", { name: "Continuer" }).click();
    await page.waitForURL(`${base}/pro/connexion`);
    await page.getByLabel("Adresse e-mail").fill(email);
    await page.getByLabel("Phrase de passe").fill(PASSPHRASE);
    await page.getByRole("button", { name: "Se connecter" }).click();
    await step(page, "login", () => page.waitForURL(`${base}/pro/patients`, { timeout: 120000 }));
    // Patient data needs a second factor.
    await page.getByRole("link", { name: "Sécurité du compte" }).click();
    await page.getByRole("button", { name: "Activer le second facteur" }).click();
    const secret = await (await step(page, "totp", () => page.waitForSelector(".totp-secret"))).textContent();
    await page.getByLabel("Code du second facteur").fill(totp(secret ?? ""));
    report.totp_secret = secret;
    report.totp_step = Math.floor(Date.now() / 30000);
    await page.getByRole("button", { name: "Confirmer" }).click();
    await step(page, "totp confirm", () => page.waitForSelector("text=Second facteur activé"));
    await page.evaluate(() => { history.pushState(null, "", "/pro/patients"); dispatchEvent(new PopStateEvent("popstate")); });
    await page.getByLabel("Nom et prénom").fill("Patient Reprise");
    await page.getByLabel("Date de naissance").fill("04/05/1975");
    await page.getByRole("button", { name: "Créer le dossier" }).click();
    await step(page, "create patient", () => page.waitForURL(/\/pro\/patients\/[0-9a-f-]{36}$/, { timeout: 60000 }));

    const path = join(mkdtempSync(join(tmpdir(), "ecrin-resume-")), "scanner.png");
    const block = Buffer.alloc(1 << 20);
    writeFileSync(path, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    for (let i = 0; i < Number(mib); i++) {
      for (let at = 0; at < block.length; at += 4) block.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, at);
      appendFileSync(path, i === 0 ? block.subarray(8) : block);
    }
    report.sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
    await page.getByLabel("Type de document").selectOption("imaging");
    await page.getByLabel("Fichier (PDF, JPEG ou PNG)").setInputFiles(path);
    // Every value the bar shows while sending, in order.
    await page.evaluate(() => {
      const bar = document.querySelector("progress") as HTMLProgressElement;
      const seen: number[] = [];
      (window as unknown as { sendingProgress: number[] }).sendingProgress = seen;
      new MutationObserver(() => {
        if (bar.dataset.phase === "sending") seen.push(bar.value);
      }).observe(bar, { attributes: true });
    });
    process.stdout.write("READY\n");
    await waitForGo();
    // The page's memory while it encrypts and sends (main-thread JS heap; all renderers' RSS).
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Performance.enable");
    const heapMiB = async (): Promise<number> => {
      const { metrics } = await cdp.send("Performance.getMetrics");
      return Math.round((metrics.find((m) => m.name === "JSHeapUsedSize")?.value ?? 0) / 2 ** 20);
    };
    const memory = { heap_before_mib: await heapMiB(), heap_peak_mib: 0, rss_before_mib: rendererRssMiB(), rss_peak_mib: 0 };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        memory.heap_peak_mib = Math.max(memory.heap_peak_mib, await heapMiB());
        memory.rss_peak_mib = Math.max(memory.rss_peak_mib, rendererRssMiB());
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    const started = Date.now();
    await page.getByRole("button", { name: "Chiffrer et envoyer" }).click();
    try {
      await step(page, "upload", () => page.waitForSelector("ul.records li:has-text('scanner.png')", { timeout: 600000 }));
    } finally {
      sampling = false;
      await sampler;
    }
    report.upload_seconds = (Date.now() - started) / 1000;
    report.memory = memory;
    report.sending_progress = await page.evaluate(() => (window as unknown as { sendingProgress: number[] }).sendingProgress);
    report.final_progress = await page.getAttribute("progress", "value");
    report.listed = await page.textContent("ul.records");
    report.file_id = new URL(page.url()).pathname.split("/").pop();
    report.email = email;
    report.passphrase = PASSPHRASE;
  } finally {
    await browser.close();
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
