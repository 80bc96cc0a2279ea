/**
 * Records through the SDK over a fake server holding real ciphertext: a version opens and its
 * content streams back verified (on this thread and in the worker); content the server
 * altered or cut makes the plaintext stream error with the SDK's one `IntegrityError`,
 * never end normally; a header moved to another record is refused before any content.
 */

import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { b64e } from "../src/_wire.ts";
import { IdentityKeys } from "../src/identity.ts";
import { ScopeKey, sealEntry } from "../src/keyring.ts";
import { OffThread } from "../src/offthread.ts";
import { RecordEncryptor } from "../src/records.ts";
import { inlineSlowCrypto, IntegrityError, type SlowCrypto } from "../src/client/index.ts";
import { Records } from "../src/client/records.ts";
import { downloadToFile } from "../src/client/node-files.ts";
import { fakeClient } from "./support/fake-client.ts";

const FILE = "55555555-5555-4555-8555-555555555555";
const RECORD = "66666666-6666-4666-8666-666666666666";
const SIZE = 200_000;

async function fixture(slow: SlowCrypto, alter: (content: Uint8Array) => Uint8Array, recordId = RECORD) {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const scopeKey = ScopeKey.generate(FILE, "clinical");
  const plain = new Uint8Array(SIZE);
  for (let at = 0; at < SIZE; at += 65_536) crypto.getRandomValues(plain.subarray(at, at + 65_536));
  const metadata = { title: "IRM", kind: "imaging", content_type: "application/pdf", size: SIZE, created_at: new Date().toISOString() };
  const enc = new RecordEncryptor({ fileId: FILE, recordId, recordVersion: 1, scopeKey, author: me, metadata });
  const chunks = [...enc.encryptSync([plain])];
  const content = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((at, c) => (content.set(c, at), at + c.length), 0);
  const version = { record_id: RECORD, version: 1, header: b64e(enc.header.toBytes()), metadata_ciphertext: b64e(enc.metadataCiphertext) };
  const entry = sealEntry(scopeKey, me.publicIdentity(), { relationship: "owner", permissions: ["read", "append"], granter: me });
  const answers: Record<string, () => Response> = {
    [`/v1/records/${RECORD}`]: () => Response.json({ record_id: RECORD, file_id: FILE, scope: "clinical", current_version: 1, version }),
    [`/v1/keyrings/${FILE}/entries`]: () => Response.json({ versions: { clinical: 1 }, entries: [entry.toJSON()] }),
    [`/v1/records/${RECORD}/versions/1/content`]: () => new Response(new Blob([alter(content) as Uint8Array<ArrayBuffer>]).stream()),
  };
  const client = fakeClient(me, async (url) => answers[new URL(url).pathname]!(), slow);
  return { records: new Records(client, me), plain };
}

const collect = async (stream: ReadableStream<Uint8Array>): Promise<Uint8Array> => new Uint8Array(await new Response(stream).arrayBuffer());

const worker = await OffThread.start({ inline: true });
const inWorker: SlowCrypto = { ...inlineSlowCrypto, worker: async () => worker };

for (const [where, slow] of [["on this thread", inlineSlowCrypto], ["in the worker", inWorker]] as const) {
  describe(`record content ${where}`, () => {
    it("streams back exactly what was written", async () => {
      const { records, plain } = await fixture(slow, (c) => c);
      const { info, content } = await records.openContent(RECORD);
      assert.equal(info.metadata.size, SIZE);
      assert.deepEqual(await collect(content), plain);
    });

    for (const [what, alter] of [
      ["a flipped byte", (c: Uint8Array) => { const t = Uint8Array.from(c); t[70_000]! ^= 1; return t; }],
      ["a cut stream", (c: Uint8Array) => c.slice(0, c.length - 100)],
      ["an extended stream", (c: Uint8Array) => { const t = new Uint8Array(c.length + 17); t.set(c); return t; }],
    ] as const) {
      it(`errors on ${what}, never ends normally`, async () => {
        const { records } = await fixture(slow, alter);
        const { content } = await records.openContent(RECORD);
        await assert.rejects(collect(content), IntegrityError);
      });
    }
  });
}

const TAMPERED = [
  ["a flipped byte", (c: Uint8Array) => { const t = Uint8Array.from(c); t[70_000]! ^= 1; return t; }],
  ["a cut stream", (c: Uint8Array) => c.slice(0, c.length - 100)],
  ["an extended stream", (c: Uint8Array) => { const t = new Uint8Array(c.length + 17); t.set(c); return t; }],
] as const;

for (const [where, slow] of [["on this thread", inlineSlowCrypto], ["in the worker", inWorker]] as const) {
  describe(`downloadToFile ${where}`, () => {
    it("writes the verified plaintext (0600), leaving no temporary file", async () => {
      const dir = await mkdtemp(join(tmpdir(), "ecrin-download-"));
      try {
        const { records, plain } = await fixture(slow, (c) => c);
        const info = await downloadToFile(records, RECORD, join(dir, "irm.pdf"));
        assert.equal(info.recordId, RECORD);
        assert.deepEqual(new Uint8Array(await readFile(join(dir, "irm.pdf"))), plain);
        assert.equal((await stat(join(dir, "irm.pdf"))).mode & 0o777, 0o600);
        assert.deepEqual(await readdir(dir), ["irm.pdf"]);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    for (const [what, alter] of TAMPERED) {
      it(`writes nothing on ${what}, and leaves an existing file as it was`, async () => {
        const dir = await mkdtemp(join(tmpdir(), "ecrin-download-"));
        try {
          const { records } = await fixture(slow, alter);
          await assert.rejects(downloadToFile(records, RECORD, join(dir, "irm.pdf")), IntegrityError);
          assert.deepEqual(await readdir(dir), [], "no file, no partial file");
          await writeFile(join(dir, "kept.pdf"), "before");
          await assert.rejects(downloadToFile(records, RECORD, join(dir, "kept.pdf")), IntegrityError);
          assert.equal(await readFile(join(dir, "kept.pdf"), "utf8"), "before");
          assert.deepEqual(await readdir(dir), ["kept.pdf"]);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });
    }
  });
}

describe("record headers", () => {
  it("refuses a header made for another record before fetching any content", async () => {
    const { records } = await fixture(inlineSlowCrypto, (c) => c, crypto.randomUUID());
    await assert.rejects(records.openContent(RECORD), IntegrityError);
  });
});

describe("record uploads", async () => {
  const { RecordDecryptor, RecordHeader } = await import("../src/index.ts");
  const { b64d } = await import("../src/_wire.ts");
  const { memorySpool } = await import("../src/client/content.ts");
  const { nodeFileSpool } = await import("../src/client/node-files.ts");

  for (const [spoolName, spool] of [["a Blob", memorySpool], ["a temporary file", () => nodeFileSpool()]] as const) {
    for (const size of [1000, 1_500_000]) {
      it(`sends ${size} bytes spooled in ${spoolName} that open back to the plaintext`, async () => {
        const me = IdentityKeys.generate(crypto.randomUUID());
        const scopeKey = ScopeKey.generate(FILE, "clinical");
        const entry = sealEntry(scopeKey, me.publicIdentity(), { relationship: "owner", permissions: ["read", "append"], granter: me });
        let created: Record<string, any> = {};
        let uploaded: Uint8Array | undefined;
        const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
          const path = new URL(url).pathname;
          if (path === "/v1/rotations") return Response.json([]);
          if (path === `/v1/keyrings/${FILE}/entries`) return Response.json({ versions: { clinical: 1 }, entries: [entry.toJSON()] });
          if (path === "/v1/records") {
            created = JSON.parse(String(init?.body));
            return Response.json({ created_at: "2026-01-01T00:00:00Z" }, { status: 201 });
          }
          if (path.endsWith("/content/uploads")) return Response.json({ upload_id: "u1" }, { status: 201 });
          // The one-shot PUT, or the pieces of a resumable upload (over 1 MiB), in order.
          const piece = new Uint8Array(await new Response(init?.body).arrayBuffer());
          const before = init?.method === "PATCH" ? uploaded ?? new Uint8Array(0) : new Uint8Array(0);
          uploaded = new Uint8Array(before.length + piece.length);
          uploaded.set(before);
          uploaded.set(piece, before.length);
          return new Response(null, { status: 204, headers: { "upload-offset": String(uploaded.length) } });
        };
        const records = new Records(fakeClient(me, fetch), me, { spool });
        const plain = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
        const info = await records.create(FILE, "clinical", {
          title: "scan", kind: "imaging", content_type: "application/pdf", size, created_at: new Date().toISOString(),
        }, new Blob([plain]));
        const ciphertext = created.content !== undefined ? b64d(created.content) : uploaded!;
        assert.equal(created.content === undefined, size > 256 * 1024, "small content travels inline, large is uploaded");
        assert.equal(ciphertext.length, created.content_length);
        const header = RecordHeader.fromBytes(b64d(created.header));
        assert.equal(header.recordId, info.recordId);
        const decryptor = new RecordDecryptor(header, b64d(created.metadata_ciphertext), { scopeKey, author: me.publicIdentity() });
        const opened = decryptor.updateBytes(ciphertext);
        decryptor.finish();
        const joined = new Uint8Array(await new Blob(opened as Uint8Array<ArrayBuffer>[]).arrayBuffer());
        assert.deepEqual(joined, plain);
      });
    }
  }
});
