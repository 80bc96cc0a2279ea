/**
 * The known-answer vector files of `tests/e2ee/data/`, as text by name. In Node they are
 * read from the repository; the browser bundle (tests/e2ee_js) injects them as
 * `globalThis.__ECRIN_VECTORS__` because a page has no file system.
 */

type Fs = { readdirSync(p: string): string[]; readFileSync(p: string, e: string): string };

export function vectorFiles(): Record<string, string> {
  const injected = (globalThis as { __ECRIN_VECTORS__?: Record<string, string> }).__ECRIN_VECTORS__;
  if (injected) return injected;
  const fs = (globalThis as { process?: { getBuiltinModule(id: string): unknown } })
    .process!.getBuiltinModule("node:fs") as Fs;
  const dir = new URL("../../../../tests/e2ee/data/", import.meta.url).pathname;
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    if (name.endsWith(".json")) out[name.slice(0, -5)] = fs.readFileSync(dir + name, "utf8");
  }
  return out;
}

export function loadVector(name: string): any {
  const text = vectorFiles()[name];
  if (text === undefined) throw new Error(`no vector file ${name}.json`);
  return JSON.parse(text);
}
