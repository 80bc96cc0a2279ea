/**
 * The browser run of the crypto tests (bundled by tests/e2ee_js/test_browser.py): every
 * vector and streaming case, plus Argon2id and streaming encryption in a real module Web
 * Worker. Results land in `globalThis.__ECRIN_RESULTS__` for the Playwright driver.
 */

import { concat } from "../src/_wire.ts";
import { IdentityKeys, KdfParams, OffThread, RecordDecryptor, ScopeKey, deriveAccountKeys } from "../src/index.ts";
import { bytesEq, ok } from "./support/check.ts";
import { ALICE, FILE_ID, RECORD_ID, contentRule } from "./support/generate.ts";
import { cases as streamCases } from "./stream_cases.ts";
import { cases as vectorCases, type Case } from "./vector_cases.ts";

const workerUrl = (globalThis as { __ECRIN_WORKER_URL__?: string }).__ECRIN_WORKER_URL__;

const workerCases: Case[] = [
  ["Argon2id and streaming encryption in a module Web Worker", async () => {
    ok(workerUrl, "the page gives the worker bundle's URL");
    const off = await OffThread.start({ workerUrl: new URL(workerUrl!, location.href) });
    try {
      const salt = new Uint8Array(16).fill(3);
      const params = new KdfParams(1, 16 * 1024 * 1024);
      let frames = 0;
      const tick = setInterval(() => frames++, 1);
      const keys = await off.deriveAccountKeys("mot de passe", salt, params);
      clearInterval(tick);
      bytesEq(keys.loginPublicKey, deriveAccountKeys("mot de passe", salt, params).loginPublicKey, "login key");
      ok(frames > 0, "the page's thread ran while the worker derived");
      const author = IdentityKeys.generate(ALICE);
      const scopeKey = ScopeKey.generate(FILE_ID, "shared", 1);
      const content = contentRule(150_000);
      const enc = off.encryptor({ fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 1, scopeKey, author, metadata: { t: 1 } });
      const chunks = [...await enc.update(content), ...await enc.finish()];
      const { header, metadataCiphertext } = await enc.result;
      const dec = new RecordDecryptor(header, metadataCiphertext, { scopeKey, author: author.publicIdentity() });
      bytesEq(concat(...dec.decryptSync(chunks)), content, "content");
    } finally {
      off.terminate();
    }
  }],
];

interface Results {
  passed: string[];
  failed: { name: string; error: string }[];
  userAgent: string;
}

async function main(): Promise<Results> {
  const results: Results = { passed: [], failed: [], userAgent: navigator.userAgent };
  for (const [name, run] of [...vectorCases, ...streamCases, ...workerCases]) {
    try {
      await run();
      results.passed.push(name);
    } catch (e) {
      results.failed.push({ name, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    }
  }
  return results;
}

(globalThis as { __ECRIN_RESULTS__?: Promise<Results> }).__ECRIN_RESULTS__ = main();
