import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const web = fileURLToPath(new URL("..", import.meta.url));
let out = "";

function sha384(data: Buffer): string {
  return `sha384-${createHash("sha384").update(data).digest("base64")}`;
}

describe("the build", () => {
  before(() => {
    out = join(mkdtempSync(join(tmpdir(), "ecrin-web-")), "dist");
    execFileSync(process.execPath, [join(web, "build.ts")], { env: { ...process.env, ECRIN_WEB_DIST: out } });
  });
  after(() => rmSync(join(out, ".."), { recursive: true, force: true }));

  it("loads every script and style with a matching integrity hash, none inline", () => {
    for (const page of ["index.html", "docs/index.html"]) {
      const html = readFileSync(join(out, page), "utf8");
      const tags = [...html.matchAll(/<(script|link)\b[^>]*>/g)].map((m) => m[0]);
      const loaded = tags.filter((tag) => tag.startsWith("<script") || tag.includes('rel="stylesheet"'));
      assert.ok(loaded.length >= 2, page);
      for (const tag of loaded) {
        const url = /(?:src|href)="([^"]+)"/.exec(tag)?.[1];
        const integrity = /integrity="([^"]+)"/.exec(tag)?.[1];
        if (url === undefined || integrity === undefined || !url.startsWith("/")) {
          assert.fail(`not a local resource with integrity: ${tag}`);
        }
        assert.equal(integrity, sha384(readFileSync(join(out, url))), url);
      }
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "inline script");
      assert.doesNotMatch(html, /<style|\sstyle=|\son\w+=/, "inline style or handler");
    }
  });

  it("lists every file with its sha384 in build.json", () => {
    const manifest = JSON.parse(readFileSync(join(out, "build.json"), "utf8")) as
      { build_hash: string; files: Record<string, string> };
    assert.match(manifest.build_hash, /^[0-9a-f]{64}$/);
    for (const [path, integrity] of Object.entries(manifest.files)) {
      assert.equal(sha384(readFileSync(join(out, path))), integrity, path);
    }
    assert.ok("/sw.js" in manifest.files && "/index.html" in manifest.files);
  });

  it("names bundles by content and is reproducible", () => {
    const first = readFileSync(join(out, "build.json"), "utf8");
    execFileSync(process.execPath, [join(web, "build.ts")], { env: { ...process.env, ECRIN_WEB_DIST: out } });
    assert.equal(readFileSync(join(out, "build.json"), "utf8"), first);
    assert.match(first, /\/assets\/main-[A-Z0-9]{8}\.js/);
  });

  it("gives the service worker the shell only, never an API path", () => {
    const sw = readFileSync(join(out, "sw.js"), "utf8");
    assert.doesNotMatch(sw, /\/v1\/|openapi\.json|\/docs/);
    assert.match(sw, /\/assets\/main-[A-Z0-9]{8}\.js/);
  });
});
