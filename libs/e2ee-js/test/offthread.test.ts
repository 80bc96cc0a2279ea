/**
 * The off-thread proxy in Node: Argon2id and streaming encryption run in a worker_threads
 * Worker (the event loop keeps turning meanwhile), give the same bytes as on the calling
 * thread, and errors cross back as the library's own classes. Plus a bounded-memory check
 * of streaming a large file through the encryptor and decryptor.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import v8 from "node:v8";
import vm from "node:vm";
import { concat } from "../src/_wire.ts";
import {
  DecryptionError, IdentityKeys, InvitationPayload, KdfParams, OffThread, RecordDecryptor, RecordEncryptor,
  ScopeKey, createInvitation, deriveAccountKeys, redeemInvitation,
} from "../src/index.ts";
import { argon2id } from "../src/kdf.ts";
import { ALICE, BOB, FILE_ID, RECORD_ID, contentRule } from "./support/generate.ts";
import { deterministic } from "./support/seeded.ts";

const author = IdentityKeys.generate(ALICE);
const scopeKey = ScopeKey.generate(FILE_ID, "shared", 2);

for (const inline of [false, true]) {
  const how = inline ? "inline" : "in a worker_threads Worker";

  test(`Argon2id ${how} derives the same account keys, without blocking the event loop`, async () => {
    const off = await OffThread.start({ inline });
    try {
      const salt = new Uint8Array(16).fill(7);
      const params = new KdfParams(2, 32 * 1024 * 1024);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const keys = await off.deriveAccountKeys("Kiné ésthète ①", salt, params);
      clearInterval(timer);
      const direct = deriveAccountKeys("Kiné ésthète ①", salt, params);
      assert.deepEqual(keys.loginPublicKey, direct.loginPublicKey);
      assert.ok(keys.kek.equals(direct.kek));
      if (!inline) assert.ok(ticks > 0, "the event loop ran while the worker derived");
    } finally {
      off.terminate();
    }
  });

  test(`streamed encryption ${how} opens on the calling thread, and back`, async () => {
    const off = await OffThread.start({ inline });
    try {
      const content = contentRule(200_000);
      const enc = off.encryptor({ fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 3, scopeKey, author, metadata: { title: "x" } });
      const chunks: Uint8Array[] = [];
      for (let i = 0; i < content.length; i += 50_000) chunks.push(...await enc.update(content.subarray(i, i + 50_000)));
      chunks.push(...await enc.finish());
      const { header, metadataCiphertext } = await enc.result;
      const dec = new RecordDecryptor(header, metadataCiphertext, { scopeKey, author: author.publicIdentity() });
      assert.deepEqual(concat(...dec.decryptSync(chunks)), content);

      const remote = off.decryptor(header, metadataCiphertext, { scopeKey, author: author.publicIdentity() });
      assert.equal((await remote.opened).contentLength, content.length);
      const body = concat(...chunks);
      const plain: Uint8Array[] = [];
      for (let i = 0; i < body.length; i += 30_000) plain.push(...await remote.update(body.subarray(i, i + 30_000)));
      await remote.finish();
      assert.deepEqual(concat(...plain), content);

      const bad = off.decryptor(header, metadataCiphertext, { scopeKey, author: author.publicIdentity() });
      const cut = body.subarray(0, body.length - 1);
      await bad.update(cut);
      await assert.rejects(bad.finish(), (e) => e instanceof DecryptionError && e.message === "decryption failed");
      await assert.rejects(off.decryptor(header, metadataCiphertext, {
        scopeKey: ScopeKey.generate(FILE_ID, "shared", 2), author: author.publicIdentity(),
      }).opened, DecryptionError);
    } finally {
      off.terminate();
    }
  });

  test(`invitations ${how} match the calling thread's`, async () => {
    const off = await OffThread.start({ inline });
    try {
      const bob = IdentityKeys.generate(BOB).publicIdentity();
      const created = await off.createInvitation([scopeKey], { inviter: author, params: KdfParams.insecureForTests() });
      const here = redeemInvitation(created.code, InvitationPayload.fromJSON(created.payload.toJSON()), bob);
      const there = await off.redeemInvitation(created.code, created.payload, bob);
      assert.deepEqual(there.proof, here.proof);
      assert.ok(there.scopeKeys[0]!.equals(scopeKey));
      const other = createInvitation([scopeKey], { inviter: author, params: KdfParams.insecureForTests() });
      await assert.rejects(off.redeemInvitation(other.code, created.payload, bob), DecryptionError);
    } finally {
      off.terminate();
    }
  });
}

test("streaming 192 MiB through the encryptor, then the decryptor, retains far less than the content", async (t) => {
  // Measured after forced collections. V8's count of array-buffer memory lags behind what is
  // really retained by tens of MiB, so the bound is half the content: an implementation
  // that buffered the stream (in either direction) would retain all of it and fail.
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const total = 192 * 1024 * 1024, piece = 1024 * 1024;
  const block = contentRule(piece);
  const make = () => deterministic("big", () => new RecordEncryptor({
    fileId: FILE_ID, recordId: RECORD_ID, recordVersion: 1, scopeKey, author, metadata: {},
  }));
  const source = () => {
    let produced = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (produced >= total) return controller.close();
        produced += piece;
        controller.enqueue(block.slice());
      },
    });
  };
  gc();
  const before = process.memoryUsage().arrayBuffers;
  let peak = 0, n = 0;
  const sample = () => {
    if (++n % 512 === 0) {
      gc();
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
  };
  // Pass 1: encrypt, keeping nothing; the header comes at the end.
  const enc = make();
  const reader = source().pipeThrough(enc.transform()).getReader();
  for (;;) {
    const { done } = await reader.read();
    if (done) break;
    sample();
  }
  // Pass 2: the same seeded encryptor gives the same chunks, streamed into the decryptor.
  const dec = new RecordDecryptor(enc.header, enc.metadataCiphertext, { scopeKey, author: author.publicIdentity() });
  const again = make().transform();
  const plain = source().pipeThrough(again).pipeThrough(dec.transform()).getReader();
  let received = 0;
  for (;;) {
    const { done, value } = await plain.read();
    if (done) break;
    assert.equal(value[7], block[(received + 7) % piece]);
    received += value.length;
    sample();
  }
  assert.equal(received, total);
  t.diagnostic(`peak retained array-buffer growth: ${(peak / 1048576).toFixed(1)} MiB`);
  assert.ok(peak < total / 2, `retained array buffers grew by ${(peak / 1048576).toFixed(1)} MiB`);
});

/** Run test/fixtures/offthread_exit.ts in a fresh Node: -> exit code and stdout. */
function exitScript(how: string): Promise<{ code: number | null; stdout: string }> {
  const script = fileURLToPath(new URL("./fixtures/offthread_exit.ts", import.meta.url));
  return new Promise((resolve) => {
    execFile(process.execPath, [script, how], { timeout: 60_000 }, (error, stdout) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout });
    });
  });
}

test("a script awaiting an off-thread Argon2id at top level exits 0 with the result (the busy worker holds it open, the idle one does not)", async () => {
  const salt = new Uint8Array(16).fill(7);
  const expected = Buffer.from(argon2id(new TextEncoder().encode("pass"), salt, new KdfParams(2, 32 * 1024 * 1024), 32)).toString("hex");
  assert.deepEqual(await exitScript("core"), { code: 0, stdout: `${expected}\n` });
  const keys = deriveAccountKeys("pass", salt, new KdfParams(2, 32 * 1024 * 1024));
  assert.deepEqual(await exitScript("sdk"), { code: 0, stdout: `${Buffer.from(keys.loginPublicKey).toString("hex")}\n` });
});

test("a script streaming through the worker's encryptor at top level exits 0 when done", async () => {
  const { code, stdout } = await exitScript("encrypt");
  assert.equal(code, 0);
  const [length, header] = stdout.trim().split(" ").map(Number);
  assert.ok(length! > 300_000 && header! > 0, stdout);
});
