/**
 * Streaming record encryption and decryption: any piece sizes give the bytes of the
 * one-shot form (hence of Python's), every streaming front end (iterables, async
 * iterables, ReadableStream, TransformStream, re-chunking of a raw body) round-trips, and a
 * cut, extended or corrupted stream fails with the opaque error. Runs in Node and Chromium.
 */

import { concat } from "../src/_wire.ts";
import {
  CHUNK_SIZE, DecryptionError, IdentityKeys, RecordDecryptor, RecordEncryptor, ScopeKey, encryptRecord,
  paddedContentLength,
} from "../src/index.ts";
import { bytesEq, eq, ok, rejects, throws } from "./support/check.ts";
import { deterministic } from "./support/seeded.ts";
import { ALICE, FILE_ID, RECORD_ID, contentRule } from "./support/generate.ts";
import type { Case } from "./vector_cases.ts";

export const cases: Case[] = [];
const test = (name: string, run: () => void | Promise<void>): void => {
  cases.push([name, run]);
};

const author = deterministic("stream-author", () => IdentityKeys.generate(ALICE));
const scopeKey = deterministic("stream-key", () => ScopeKey.generate(FILE_ID, "clinical", 1));
const base = { fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 1, scopeKey, author };
const metadata = { title: "Radiographie", kind: "document", content_type: "application/pdf" };

function pieces(data: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0, i = 0;
  while (offset < data.length) {
    const size = sizes[i++ % sizes.length]!;
    out.push(data.slice(offset, offset + size));
    offset += size;
  }
  return out;
}

function streamOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) controller.enqueue(parts[i++]!);
      else controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return concat(...parts);
    parts.push(value);
  }
}

const LENGTHS = [0, 1, 255, 256, 257, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5, 300_000];
const SIZES = [[1, 7, 1000], [CHUNK_SIZE], [CHUNK_SIZE + 3], [100_000, 17], [4096]];

test("streamed encryption with any piece sizes gives the one-shot bytes", () => {
  for (const n of LENGTHS) {
    const content = contentRule(n);
    const oneShot = deterministic(`stream-${n}`, () => encryptRecord(content, metadata, base));
    eq(oneShot.chunks.length, Math.ceil(paddedContentLength(n) / CHUNK_SIZE), `chunk count for ${n}`);
    for (const sizes of SIZES) {
      const [chunks, header, meta] = deterministic(`stream-${n}`, () => {
        const enc = new RecordEncryptor({ ...base, metadata });
        const out: Uint8Array[] = [];
        for (const p of pieces(content, sizes)) out.push(...enc.update(p));
        out.push(...enc.finish());
        return [out, enc.header, enc.metadataCiphertext] as const;
      });
      eq(chunks.length, oneShot.chunks.length, `chunks for ${n} in pieces ${sizes}`);
      chunks.forEach((c, i) => bytesEq(c, oneShot.chunks[i]!, `chunk ${i} of ${n}`));
      bytesEq(header.toBytes(), oneShot.header.toBytes(), `header of ${n}`);
      bytesEq(meta, oneShot.metadataCiphertext, `metadata of ${n}`);
    }
  }
});

test("a piece buffer the caller reuses after update does not change the ciphertext", () => {
  // A BYOB reader refills one buffer: the encryptor copies or encrypts what it keeps, it
  // never holds the caller's memory across calls (the held-back last piece included).
  const n = 5 * CHUNK_SIZE + 123;
  const content = contentRule(n);
  const oneShot = deterministic(`stream-${n}`, () => encryptRecord(content, metadata, base));
  for (const size of [CHUNK_SIZE, CHUNK_SIZE + 3, 2 * CHUNK_SIZE + 1, 1000]) {
    const chunks = deterministic(`stream-${n}`, () => {
      const enc = new RecordEncryptor({ ...base, metadata });
      const buffer = new Uint8Array(size);
      const out: Uint8Array[] = [];
      for (let offset = 0; offset < n; offset += size) {
        const piece = buffer.subarray(0, Math.min(size, n - offset));
        piece.set(content.subarray(offset, offset + piece.length));
        out.push(...enc.update(piece));
        buffer.fill(0xa5);
      }
      out.push(...enc.finish());
      return out;
    });
    eq(chunks.length, oneShot.chunks.length, `chunks with a reused ${size}-byte buffer`);
    chunks.forEach((c, i) => bytesEq(c, oneShot.chunks[i]!, `chunk ${i} with a reused ${size}-byte buffer`));
  }
});

test("ReadableStream -> TransformStream -> raw body re-chunked -> plaintext", async () => {
  for (const n of [0, 1000, CHUNK_SIZE, 2 * CHUNK_SIZE + 123]) {
    const content = contentRule(n);
    const enc = new RecordEncryptor({ ...base, metadata });
    const ciphertext = await collect(streamOf(pieces(content, [777, 5000])).pipeThrough(enc.transform()));
    const dec = new RecordDecryptor(enc.header, enc.metadataCiphertext, { scopeKey, author: author.publicIdentity() });
    eq(dec.contentLength, n, "content length");
    eq(dec.metadata["title"], "Radiographie", "metadata");
    // The body arrives in arbitrary pieces, as from fetch().
    const plain = await collect(streamOf(pieces(ciphertext, [1, 4096, 65553, 9])).pipeThrough(dec.byteTransform()));
    bytesEq(plain, content, `content of ${n}`);
  }
});

test("async iterables in, async iterables out", async () => {
  const content = contentRule(150_000);
  const enc = new RecordEncryptor({ ...base, metadata });
  async function* source() {
    for (const p of pieces(content, [10_000])) yield p;
  }
  const chunks: Uint8Array[] = [];
  for await (const c of enc.encrypt(source())) chunks.push(c);
  const dec = new RecordDecryptor(enc.header, enc.metadataCiphertext, { scopeKey, author: author.publicIdentity() });
  const out: Uint8Array[] = [];
  for await (const p of dec.decrypt(streamOf(chunks))) out.push(p);
  bytesEq(concat(...out), content, "content");
});

test("a cut, extended or corrupted raw body fails opaquely", async () => {
  const content = contentRule(2 * CHUNK_SIZE + 10);
  const rec = encryptRecord(content, metadata, base);
  const body = concat(...rec.chunks);
  const open = () => new RecordDecryptor(rec.header, rec.metadataCiphertext, { scopeKey, author: author.publicIdentity() });
  await rejects(() => collect(streamOf([body.subarray(0, body.length - 1)]).pipeThrough(open().byteTransform())),
    DecryptionError, "cut by one byte");
  await rejects(() => collect(streamOf([body.subarray(0, CHUNK_SIZE + 17)]).pipeThrough(open().byteTransform())),
    DecryptionError, "cut at a chunk boundary");
  await rejects(() => collect(streamOf([body, Uint8Array.of(0)]).pipeThrough(open().byteTransform())),
    DecryptionError, "extended");
  const bad = Uint8Array.from(body);
  bad[CHUNK_SIZE + 17 + 5] = bad[CHUNK_SIZE + 17 + 5]! ^ 1;
  await rejects(() => collect(streamOf([bad]).pipeThrough(open().byteTransform())), DecryptionError, "corrupted");
  const dec = open();
  throws(() => dec.update(rec.chunks[1]!), DecryptionError, "out of order");
  throws(() => dec.update(rec.chunks[0]!), DecryptionError, "a failed decryptor stays failed");
});

test("the encryptor refuses misuse", () => {
  throws(() => new RecordEncryptor({ ...base, metadata, recordVersion: 0 }), RangeError, "version 0");
  throws(() => new RecordEncryptor({ ...base, metadata, fileId: RECORD_ID }), RangeError, "key of another file");
  const enc = new RecordEncryptor({ ...base, metadata });
  throws(() => enc.header, Error, "header before the end");
  enc.finish();
  throws(() => enc.update(Uint8Array.of(1)), Error, "update after finish");
  ok(enc.header.paddedLength === 256, "empty content pads to 256");
});
