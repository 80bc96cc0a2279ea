/**
 * Builds the web app into web/dist: content-hashed bundles, pages that load them with
 * Subresource Integrity, the service worker, the PWA manifest and the self-hosted Swagger UI.
 *
 * Why a script and not a bundler's HTML plugin: every byte the gateway serves is listed
 * here with its sha384, in `build.json`, whose own digest is the published build hash
 * (docs/web.md). The pages carry no inline script or style, so the gateway's CSP can
 * forbid both. The build goes to a temporary folder renamed into place, so a gateway never
 * serves half a build.
 *
 * Run: `node web/build.ts` (Node 24 strips the types), or `make web`.
 */
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync,
  statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, extname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");
const out = resolve(process.env.ECRIN_WEB_DIST ?? join(here, "dist"));
const staging = `${out}.tmp-${process.pid}`;
const require = createRequire(import.meta.url);

/** Hash used in file names: 10 hex digits of SHA-256, enough to never collide in one build. */
function nameHash(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex").slice(0, 10);
}

/** The `integrity` attribute value of a file's bytes. */
export function sri(data: Buffer): string {
  return `sha384-${createHash("sha384").update(data).digest("base64")}`;
}

function escapeAttribute(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

/** Copies a file into the build under a content-hashed name; returns its URL path. */
function copyHashed(from: string, toDir: string): string {
  const data = readFileSync(from);
  const ext = extname(from);
  const name = `${basename(from, ext)}-${nameHash(data)}${ext}`;
  mkdirSync(join(staging, toDir), { recursive: true });
  writeFileSync(join(staging, toDir, name), data);
  return `/${toDir}/${name}`;
}

const common: esbuild.BuildOptions = {
  bundle: true,
  format: "esm",
  target: ["es2022", "chrome110", "firefox115", "safari16"],
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  logLevel: "warning",
  // libsodium's Emscripten glue mentions Node modules it never loads in a browser.
  external: ["fs", "path", "crypto", "worker_threads", "node:*"],
  platform: "browser",
};

/** Bundles one entry point to `<dir>/<name>-<hash>.js` and returns its URL path. */
async function bundle(entry: string, dir: string, define: Record<string, string> = {}
): Promise<string> {
  const result = await esbuild.build({
    ...common,
    entryPoints: [join(src, entry)],
    outdir: join(staging, dir),
    entryNames: "[name]-[hash]",
    define,
    metafile: true,
  });
  const outputs = Object.entries(result.metafile.outputs)
    .filter(([, meta]) => meta.entryPoint !== undefined).map(([path]) => path);
  if (outputs.length !== 1) throw new Error(`expected one output for ${entry}`);
  return `/${relative(staging, resolve(outputs[0] as string)).split("\\").join("/")}`;
}

function scriptTag(url: string): string {
  const integrity = sri(readFileSync(join(staging, url)));
  return `<script type="module" src="${url}" integrity="${integrity}" crossorigin="anonymous"></script>`;
}

function classicScriptTag(url: string): string {
  const integrity = sri(readFileSync(join(staging, url)));
  return `<script src="${url}" integrity="${integrity}" crossorigin="anonymous"></script>`;
}

function styleTag(url: string): string {
  const integrity = sri(readFileSync(join(staging, url)));
  return `<link rel="stylesheet" href="${url}" integrity="${integrity}" crossorigin="anonymous">`;
}

function appPage(app: string, css: string): string {
  return `<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="theme-color" content="#1d5c63">
<title>Écrin</title>
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/icon.svg" type="image/svg+xml">
${styleTag(css)}
${scriptTag(app)}
</head>
<body>
<a class="skip-link" href="#main">Aller au contenu</a>
<div id="app"></div>
<noscript>Écrin chiffre vos données dans le navigateur : activez JavaScript.</noscript>
</body>
</html>
`;
}

function docsPage(bundleJs: string, css: string, init: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Écrin API</title>
<link rel="icon" href="/icon.svg" type="image/svg+xml">
${styleTag(css)}
</head>
<body data-openapi-url="${escapeAttribute("/openapi.json")}">
<div id="swagger-ui"></div>
${classicScriptTag(bundleJs)}
${scriptTag(init)}
</body>
</html>
`;
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

async function main(): Promise<void> {
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });

  // The worker first: the app needs its hashed URL.
  const worker = await bundle("worker.ts", "assets");
  const app = await bundle("main.ts", "assets", { __ECRIN_WORKER_URL__: JSON.stringify(worker) });
  const css = await bundle("styles.css", "assets");
  writeFileSync(join(staging, "index.html"), appPage(app, css));
  cpSync(join(src, "public"), staging, { recursive: true });

  // Swagger UI, served by the gateway at /docs without any CDN.
  const swagger = dirname(require.resolve("swagger-ui-dist/package.json"));
  const swaggerJs = copyHashed(join(swagger, "swagger-ui-bundle.js"), "docs/assets");
  const swaggerCss = copyHashed(join(swagger, "swagger-ui.css"), "docs/assets");
  cpSync(join(swagger, "LICENSE"), join(staging, "docs/assets/swagger-ui.LICENSE.txt"));
  const docsInit = await bundle("docs-init.ts", "docs/assets");
  writeFileSync(join(staging, "docs/index.html"), docsPage(swaggerJs, swaggerCss, docsInit));

  // The service worker caches the app shell only: its list is fixed here, at build time.
  const shell = ["/", app, css, worker, "/manifest.webmanifest", "/icon.svg"];
  const shellId = nameHash(Buffer.from(shell.map((url) =>
    url === "/" ? readFileSync(join(staging, "index.html")) : readFileSync(join(staging, url))
  ).reduce((acc, data) => Buffer.concat([acc, data]), Buffer.alloc(0))));
  await esbuild.build({
    ...common,
    entryPoints: [join(src, "sw.ts")],
    outfile: join(staging, "sw.js"),
    format: "iife",
    define: { __ECRIN_SHELL__: JSON.stringify(shell), __ECRIN_SHELL_ID__: JSON.stringify(shellId) },
  });

  // Every file with its sha384: what the gateway serves, and what anyone can rebuild and compare.
  const files: Record<string, string> = {};
  for (const path of walk(staging).sort()) {
    files[`/${relative(staging, path).split("\\").join("/")}`] = sri(readFileSync(path));
  }
  const buildHash = createHash("sha256").update(JSON.stringify(files)).digest("hex");
  writeFileSync(join(staging, "build.json"),
    `${JSON.stringify({ build_hash: buildHash, files }, null, 2)}\n`);

  rmSync(out, { recursive: true, force: true });
  renameSync(staging, out);
  console.log(`web: built ${Object.keys(files).length} files into ${out} (build ${buildHash.slice(0, 16)})`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main().catch((error: unknown) => {
    rmSync(staging, { recursive: true, force: true });
    console.error(error);
    process.exit(1);
  });
}
