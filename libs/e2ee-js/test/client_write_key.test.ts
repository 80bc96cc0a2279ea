/**
 * Writes under the scope's current key in one request (issue 21, as `ecrin_client.records`
 * does): the SDK writes with the latest key it knows, and only when the records API refuses
 * the write for its key does it finish the file's pending rotations (`rotation-pending`) or
 * fetch the latest key (`key-version-not-current`), encrypt again and send again, at most
 * `WRITE_ATTEMPTS` times. Any other refusal is not retried; a refused attempt's spool is
 * discarded.
 *
 * The fake server below plays the gateway's routes with the records API's rules: a header
 * under another key version than the kms's current one is refused, and so is any write while
 * a rotation of the scope is pending (the device is the file's owner, who rotates).
 */

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { b64d } from "../src/_wire.ts";
import { IdentityKeys } from "../src/identity.ts";
import { ScopeKey, sealEntry } from "../src/keyring.ts";
import { RecordDecryptor, RecordHeader } from "../src/index.ts";
import { Conflict } from "../src/client/index.ts";
import { memorySpool, type Spool } from "../src/client/content.ts";
import { nodeFileSpool } from "../src/client/node-files.ts";
import { Records, WRITE_ATTEMPTS, type Content } from "../src/client/records.ts";
import { fakeClient } from "./support/fake-client.ts";

const FILE = "77777777-7777-4777-8777-777777777777";
const WRITES = new Set(["POST /v1/records", "POST /v1/records/{id}/versions"]);

const problem = (status: number, slug: string): Response =>
  new Response(JSON.stringify({ type: `https://ecrin.example.fr/problems/${slug}`, title: slug, status }),
    { status, headers: { "content-type": "application/problem+json" } });

/** A fake gateway whose kms holds the clinical key versions in `keys` (the last is current). */
function server(options: { keys: ScopeKey[]; pending?: boolean; refuse?: (n: number) => string | undefined }) {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const seal = (key: ScopeKey) => sealEntry(key, me.publicIdentity(), {
    relationship: "owner", permissions: ["read", "append"], granter: me,
  }).toJSON();
  const state = {
    entries: options.keys.map(seal) as any[], current: options.keys.at(-1)!.version, pending: options.pending ?? false,
    /** Every request, "METHOD /path" with record ids as `{id}`. */
    calls: [] as string[],
    /** The headers of every write sent (refused or stored), in order. */
    sent: [] as RecordHeader[],
    records: new Map<string, any>(),
    uploaded: new Map<string, Uint8Array>(),
  };
  let writes = 0;
  const fetch = async (url: string, init?: RequestInit): Promise<Response> => {
    const path = new URL(url).pathname;
    const method = init?.method ?? "GET";
    const call = `${method} ${path.replace(/[0-9a-f]{8}-[0-9a-f-]{27}(?=\/|$)/g, (id) => (id === FILE ? id : "{id}"))}`;
    state.calls.push(call);
    if (WRITES.has(call)) {
      const body = JSON.parse(String(init?.body));
      const header = RecordHeader.fromBytes(b64d(body.header));
      state.sent.push(header);
      const forced = options.refuse?.(++writes);
      if (forced !== undefined) return problem(409, forced);
      if (header.keyVersion !== state.current) return problem(409, "key-version-not-current");
      if (state.pending) return problem(409, "rotation-pending");
      const version = { record_id: header.recordId, version: header.recordVersion, header: body.header, metadata_ciphertext: body.metadata_ciphertext };
      state.records.set(header.recordId, { record_id: header.recordId, file_id: FILE, scope: "clinical", current_version: header.recordVersion, version });
      if (body.content !== undefined) state.uploaded.set(`${header.recordId}/${header.recordVersion}`, b64d(body.content));
      return Response.json({ created_at: "2026-12-01T00:00:00Z" }, { status: 201 });
    }
    switch (call) {
      case `GET /v1/keyrings/${FILE}/entries`:
        return Response.json({ versions: { clinical: state.current }, entries: state.entries });
      case `POST /v1/keyrings/${FILE}/entries`: {
        const { entries } = JSON.parse(String(init?.body));
        state.entries.push(...entries);
        state.current = Math.max(...entries.map((e: any) => Number(e.version)));
        return Response.json({}, { status: 201 });
      }
      case "GET /v1/rotations":
        return Response.json(state.pending ? [{ file_id: FILE, scope: "clinical", reason: "revoked", rotated_version: null }] : []);
      case `POST /v1/rotations/${FILE}/clinical/done`:
        state.pending = false;
        return Response.json({});
      case `GET /v1/files/${FILE}/members`:
        return Response.json([{ account_id: me.accountId, relationship: "owner", scopes: { clinical: "append" }, valid_from: null, valid_until: null }]);
      case "GET /v1/records/headers":
        return Response.json({ items: [], next_cursor: null });
      case "GET /v1/records/{id}":
        return Response.json(state.records.get(path.split("/").at(-1)!));
      case "POST /v1/records/{id}/versions/1/content/uploads":
        return Response.json({ upload_id: "u1" }, { status: 201 });
    }
    if (method === "PATCH" || method === "PUT") { // the pieces of an upload, in order
      const piece = new Uint8Array(await new Response(init?.body).arrayBuffer());
      const recordId = path.split("/")[3]!;
      const before = method === "PATCH" ? state.uploaded.get(`${recordId}/1`) ?? new Uint8Array(0) : new Uint8Array(0);
      const joined = new Uint8Array(before.length + piece.length);
      joined.set(before);
      joined.set(piece, before.length);
      state.uploaded.set(`${recordId}/1`, joined);
      return new Response(null, { status: 204, headers: { "upload-offset": String(joined.length) } });
    }
    return problem(404, "not-found");
  };
  const client = fakeClient(me, fetch);
  return { me, state, client, records: (spool?: () => Spool) => new Records(client, me, spool ? { spool } : {}) };
}

const note = (size = 100) => ({
  title: "Séance", kind: "session-note", content_type: "application/json", size, created_at: new Date().toISOString(),
});
const bytes = (size = 100) => new Uint8Array(size).map((_, i) => (i * 7) & 0xff);

/** Spools that count how many were made and discarded. */
function counted(make: () => Spool) {
  const count = { made: 0, discarded: 0 };
  const spool = (): Spool => {
    count.made++;
    const inner = make();
    return { write: (c) => inner.write(c), finish: () => inner.finish(), discard: async () => { count.discarded++; await inner.discard(); } };
  };
  return { count, spool };
}

describe("a write in steady state", () => {
  it("is one request once the scope's key is known: no GET /v1/rotations first", async () => {
    const { state, records } = server({ keys: [ScopeKey.generate(FILE, "clinical")] });
    const sdk = records();
    await sdk.create(FILE, "clinical", note(), bytes());
    assert.deepEqual(state.calls, [`GET /v1/keyrings/${FILE}/entries`, "POST /v1/records"]);
    state.calls.length = 0;
    const info = await sdk.create(FILE, "clinical", note(), bytes());
    assert.deepEqual(state.calls, ["POST /v1/records"]);
    assert.equal(info.keyVersion, 1);
  });

  it("is one request for a key this device just made (a new patient file)", async () => {
    const key = ScopeKey.generate(FILE, "clinical");
    const { state, records } = server({ keys: [key] });
    const sdk = records();
    await sdk.adoptKeys([key]);
    await sdk.create(FILE, "clinical", note(), bytes());
    assert.deepEqual(state.calls, ["POST /v1/records"]);
  });
});

describe("a write refused for its key", () => {
  it("rotation-pending: finishes the file's rotation, then writes under the new key", async () => {
    const key = ScopeKey.generate(FILE, "clinical");
    const { state, records, me } = server({ keys: [key], pending: true });
    const sdk = records();
    await sdk.adoptKeys([key]);
    const info = await sdk.create(FILE, "clinical", note(), bytes());
    assert.equal(info.keyVersion, 2);
    assert.equal(state.pending, false, "the rotation was marked done");
    assert.deepEqual(state.calls, [
      "POST /v1/records", // refused: rotation-pending
      `GET /v1/rotations`,
      `GET /v1/keyrings/${FILE}/entries`, // the latest version from the kms, not the session's
      `GET /v1/files/${FILE}/members`,
      `POST /v1/keyrings/${FILE}/entries`,
      "GET /v1/records/headers",
      `POST /v1/rotations/${FILE}/clinical/done`,
      "POST /v1/records", // the new key was adopted: no fetch
    ]);
    // Encrypted again: the same record, a new header under the new key.
    const [refused, stored] = state.sent as [RecordHeader, RecordHeader];
    assert.deepEqual([refused.keyVersion, stored.keyVersion], [1, 2]);
    assert.equal(refused.recordId, stored.recordId);
    assert.notDeepEqual(refused.toBytes(), stored.toBytes());
    const newKey = await sdk.scopeKey(FILE, "clinical", 2);
    const decryptor = new RecordDecryptor(stored, b64d(state.records.get(stored.recordId).version.metadata_ciphertext),
      { scopeKey: newKey, author: me.publicIdentity() });
    assert.deepEqual([...decryptor.updateBytes(state.uploaded.get(`${stored.recordId}/1`)!)], [bytes()]);
    decryptor.finish();
  });

  it("key-version-not-current: fetches the latest key and writes under it", async () => {
    const old = ScopeKey.generate(FILE, "clinical");
    const { state, records } = server({ keys: [old, ScopeKey.generate(FILE, "clinical", 2)] });
    const sdk = records();
    await sdk.adoptKeys([old]); // this session knew version 1; another device rotated since
    const info = await sdk.create(FILE, "clinical", note(), bytes());
    assert.equal(info.keyVersion, 2);
    assert.deepEqual(state.calls, ["POST /v1/records", `GET /v1/keyrings/${FILE}/entries`, "POST /v1/records"]);
    assert.deepEqual(state.sent.map((h) => h.keyVersion), [1, 2]);
    state.calls.length = 0;
    await sdk.create(FILE, "clinical", note(), bytes());
    assert.deepEqual(state.calls, ["POST /v1/records"], "the new latest version is remembered");
  });

  it(`gives up with the Conflict after ${WRITE_ATTEMPTS} refusals`, async () => {
    const { state, records } = server({ keys: [ScopeKey.generate(FILE, "clinical")], refuse: () => "key-version-not-current" });
    await assert.rejects(records().create(FILE, "clinical", note(), bytes()),
      (error) => error instanceof Conflict && error.slug === "key-version-not-current");
    assert.equal(WRITE_ATTEMPTS, 3);
    assert.equal(state.calls.filter((c) => c === "POST /v1/records").length, 3);
  });

  it("does not retry any other Conflict", async () => {
    const { state, records } = server({ keys: [ScopeKey.generate(FILE, "clinical")], refuse: () => "record-exists" });
    await assert.rejects(records().create(FILE, "clinical", note(), bytes()),
      (error) => error instanceof Conflict && error.slug === "record-exists");
    assert.deepEqual(state.calls, [`GET /v1/keyrings/${FILE}/entries`, "POST /v1/records"]);
  });

  it("encrypts a large document again into a new spool and leaves no spool behind", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ecrin-write-key-"));
    try {
      const old = ScopeKey.generate(FILE, "clinical");
      const { state, records, me } = server({ keys: [old, ScopeKey.generate(FILE, "clinical", 2)] });
      const { count, spool } = counted(() => nodeFileSpool(dir));
      const sdk = records(spool);
      await sdk.adoptKeys([old]);
      const size = 1_500_000; // over one row: created, then uploaded in pieces
      const info = await sdk.create(FILE, "clinical", note(size), new Blob([bytes(size)]));
      assert.equal(info.keyVersion, 2);
      assert.deepEqual(count, { made: 2, discarded: 2 });
      assert.deepEqual(await readdir(dir), []);
      assert.deepEqual(state.calls.filter((c) => c.startsWith("POST /v1/records")), [
        "POST /v1/records", "POST /v1/records", "POST /v1/records/{id}/versions/1/content/uploads",
      ]);
      const stored = state.sent[1]!;
      const decryptor = new RecordDecryptor(stored, b64d(state.records.get(stored.recordId).version.metadata_ciphertext),
        { scopeKey: await sdk.scopeKey(FILE, "clinical", 2), author: me.publicIdentity() });
      const plain = decryptor.updateBytes(state.uploaded.get(`${stored.recordId}/1`)!);
      decryptor.finish();
      assert.deepEqual(new Uint8Array(await new Blob(plain as Uint8Array<ArrayBuffer>[]).arrayBuffer()), bytes(size));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("retries content given as a function returning a new stream; a bare stream is refused once", async () => {
    const old = ScopeKey.generate(FILE, "clinical");
    const { state, records } = server({ keys: [old, ScopeKey.generate(FILE, "clinical", 2)] });
    const { count, spool } = counted(memorySpool);
    const sdk = records(spool);
    await sdk.adoptKeys([old]);
    const stream = (): ReadableStream<Uint8Array> => new Blob([bytes()]).stream();
    // A stream is read once: the refusal is thrown, the stale key forgotten.
    await assert.rejects(sdk.create(FILE, "clinical", note(), stream()),
      (error) => error instanceof Conflict && error.slug === "key-version-not-current");
    assert.deepEqual(state.calls, ["POST /v1/records"]);
    assert.deepEqual(count, { made: 1, discarded: 1 });
    await sdk.adoptKeys([old]); // stale again
    state.calls.length = 0;
    const reopened: Content = stream;
    assert.equal((await sdk.create(FILE, "clinical", note(), reopened)).keyVersion, 2);
    assert.deepEqual(state.calls, ["POST /v1/records", `GET /v1/keyrings/${FILE}/entries`, "POST /v1/records"]);
    assert.deepEqual(count, { made: 3, discarded: 3 });
  });

  it("a new version too: refused for its key, it is written again under the latest", async () => {
    const old = ScopeKey.generate(FILE, "clinical");
    const { state, records } = server({ keys: [old] });
    const sdk = records();
    const first = await sdk.create(FILE, "clinical", note(), bytes());
    // Another device rotated: the kms now holds version 2, which this session does not know.
    state.entries.push(sealEntry(ScopeKey.generate(FILE, "clinical", 2), sdk.identity.publicIdentity(), {
      relationship: "owner", permissions: ["read", "append"], granter: sdk.identity,
    }).toJSON());
    state.current = 2;
    state.calls.length = 0;
    const info = await sdk.addVersion(first.recordId, note(), bytes());
    assert.deepEqual([info.version, info.keyVersion], [2, 2]);
    assert.deepEqual(state.calls, [
      "GET /v1/records/{id}", "POST /v1/records/{id}/versions", `GET /v1/keyrings/${FILE}/entries`, "POST /v1/records/{id}/versions",
    ]);
  });
});
