// Drives headless Debian Chromium through playwright-core: opens the page given as the
// first argument, waits for the bundled crypto tests, prints their results as JSON.
import { chromium } from "playwright-core";

const [url, executablePath] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => process.stderr.write(`console: ${m.text()}\n`));
  await page.goto(url, { timeout: 30_000 });
  process.stderr.write("page loaded\n");
  await page.waitForFunction(() => globalThis.__ECRIN_RESULTS__ !== undefined, null, { timeout: 120_000 });
  const results = await page.evaluate(() => globalThis.__ECRIN_RESULTS__);
  process.stdout.write(JSON.stringify({ ...results, pageErrors: errors }));
} finally {
  await browser.close();
}
