/**
 * Resumable uploads (`client/upload.ts`) against a fake records API that keeps whole 1 MiB
 * rows as the real one does: a connection cut mid-piece resumes from the server's offset
 * (the bytes sent again stay under a piece), a lost answer is recovered by asking, progress
 * only ever reports what the server acknowledged, and an upload that keeps failing gives up
 * after a bounded number of attempts.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  GatewayTransport, MAX_PIECE_BYTES, PIECE_BYTES, resumableUpload, ROW_BYTES, Unavailable, UploadProtocolError,
} from "../src/client/index.ts";

const SERVER = "https://ecrin.test";
const RECORD = "66666666-6666-4666-8666-666666666666";
const BASE = `/v1/records/${RECORD}/versions/1/content/uploads`;

/** The records API's session rules, in memory. `cut(n)`: the n-th PATCH is cut after `at` bytes. */
class FakeRecords {
  stored = new Uint8Array(0);
  complete = false;
  patches = 0;
  received = 0;
  /** Bytes of each PATCH body, as sent. */
  pieces: number[] = [];
  heads = 0;
  cuts = new Map<number, number>();
  /** PATCHes whose answer is lost after the server stored the piece. */
  lostAnswers = new Set<number>();
  down = false;
  readonly length: number;

  constructor(length: number) {
    this.length = length;
  }

  fetch = async (input: string, init?: RequestInit): Promise<Response> => {
    const url = new URL(input);
    const method = init?.method ?? "GET";
    const headers = new Headers(init?.headers);
    if (this.down) throw new TypeError("fetch failed");
    const state = (): Record<string, string> => ({
      "upload-offset": String(this.stored.length), "upload-complete": this.complete ? "?1" : "?0",
    });
    if (method === "POST" && url.pathname === BASE) {
      assert.equal(headers.get("upload-length"), String(this.length));
      return Response.json({ upload_id: "u1", offset: 0, length: this.length }, { status: 201, headers: state() });
    }
    assert.equal(url.pathname, `${BASE}/u1`);
    if (method === "HEAD") {
      this.heads += 1;
      return new Response(null, { status: 204, headers: state() });
    }
    assert.equal(method, "PATCH");
    this.patches += 1;
    const offset = Number(headers.get("upload-offset"));
    if (offset !== this.stored.length) {
      return Response.json({ type: "https://ecrin.health/problems/mismatching-upload-offset", status: 409 },
        { status: 409, headers: state() });
    }
    let body = new Uint8Array(await (init?.body as Blob).arrayBuffer());
    this.pieces.push(body.length);
    const cut = this.cuts.get(this.patches);
    if (cut !== undefined) body = body.subarray(0, cut);
    this.received += body.length;
    const final = headers.get("upload-complete") === "?1";
    // Whole rows only, unless this piece completes the content.
    const keep = cut !== undefined || !final ? Math.floor(body.length / ROW_BYTES) * ROW_BYTES : body.length;
    const next = new Uint8Array(this.stored.length + keep);
    next.set(this.stored);
    next.set(body.subarray(0, keep), this.stored.length);
    this.stored = next;
    if (cut !== undefined) throw new TypeError("network error");
    if (final) this.complete = this.stored.length === this.length;
    if (this.lostAnswers.has(this.patches)) throw new TypeError("network error");
    return new Response(null, { status: 204, headers: state() });
  };

  transport(): GatewayTransport {
    return new GatewayTransport(SERVER, {
      tokens: { access_token: "a", refresh_token: "r", session_id: "s" }, fetch: this.fetch, onTokens: async () => undefined,
    });
  }
}

function content(size: number): Blob {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65_536) crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65_536)));
  return new Blob([bytes]);
}

const noPause = { backoffMs: () => 0 };
/** Every piece counts as quick, however loaded the machine running the tests. */
const fast = { quickPieceMs: 60_000 };

describe("resumable upload", () => {
  it("sends whole-MiB pieces and reports only acknowledged bytes", async () => {
    const blob = content(3 * PIECE_BYTES + 12_345);
    const server = new FakeRecords(blob.size);
    const seen: number[] = [];
    await resumableUpload(server.transport(), RECORD, 1, blob, { onProgress: (n) => seen.push(n), ...fast, ...noPause });
    assert.ok(server.complete);
    assert.deepEqual(server.stored, new Uint8Array(await blob.arrayBuffer()));
    // a fast link: each piece twice the last
    assert.deepEqual(server.pieces, [PIECE_BYTES, 2 * PIECE_BYTES, 12_345]);
    assert.deepEqual(seen, [0, PIECE_BYTES, 3 * PIECE_BYTES, blob.size, blob.size]);
  });

  it("pieces double up to the cap on a fast link", async () => {
    const blob = content(12 * ROW_BYTES);
    const server = new FakeRecords(blob.size);
    await resumableUpload(server.transport(), RECORD, 1, blob,
      { pieceBytes: ROW_BYTES, maxPieceBytes: 4 * ROW_BYTES, ...fast, ...noPause });
    assert.deepEqual(server.pieces.map((n) => n / ROW_BYTES), [1, 2, 4, 4, 1]);
    assert.ok(MAX_PIECE_BYTES > PIECE_BYTES && MAX_PIECE_BYTES % ROW_BYTES === 0);
  });

  it("pieces keep their first size on a slow link", async () => {
    const blob = content(3 * PIECE_BYTES + 12_345);
    const server = new FakeRecords(blob.size);
    const seen: number[] = [];
    await resumableUpload(server.transport(), RECORD, 1, blob,
      { onProgress: (n) => seen.push(n), quickPieceMs: 0, ...noPause });
    assert.deepEqual(server.pieces, [PIECE_BYTES, PIECE_BYTES, PIECE_BYTES, 12_345]);
    assert.deepEqual(seen, [0, PIECE_BYTES, 2 * PIECE_BYTES, 3 * PIECE_BYTES, blob.size, blob.size]);
  });

  it("a failed piece halves the next one", async () => {
    const blob = content(16 * ROW_BYTES);
    const server = new FakeRecords(blob.size);
    server.cuts.set(2, 10); // the second piece (4 MiB) is cut before a row: nothing stored
    await resumableUpload(server.transport(), RECORD, 1, blob,
      { pieceBytes: 2 * ROW_BYTES, maxPieceBytes: 8 * ROW_BYTES, ...fast, ...noPause });
    assert.ok(server.complete);
    assert.deepEqual(server.stored, new Uint8Array(await blob.arrayBuffer()));
    // 2 MiB, then 4 MiB cut off, then from 2 MiB again
    assert.deepEqual(server.pieces.map((n) => n / ROW_BYTES), [2, 4, 2, 4, 8]);
  });

  it("a cut piece resumes from the server's offset, re-sending less than a piece", async () => {
    const blob = content(3 * PIECE_BYTES);
    const server = new FakeRecords(blob.size);
    server.cuts.set(2, PIECE_BYTES / 2 + 1234); // the second piece dies halfway
    const seen: number[] = [];
    await resumableUpload(server.transport(), RECORD, 1, blob, { onProgress: (n) => seen.push(n), ...noPause });
    assert.ok(server.complete);
    assert.deepEqual(server.stored, new Uint8Array(await blob.arrayBuffer()));
    assert.ok(server.heads >= 1);
    const resent = server.received - blob.size;
    assert.ok(resent > 0 && resent < ROW_BYTES, `re-sent ${resent} bytes`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, "progress never goes back");
  });

  it("a lost answer to the last piece is recovered by asking", async () => {
    const blob = content(PIECE_BYTES + ROW_BYTES);
    const server = new FakeRecords(blob.size);
    server.lostAnswers.add(2);
    await resumableUpload(server.transport(), RECORD, 1, blob, noPause);
    assert.ok(server.complete);
    assert.equal(server.received, blob.size); // nothing sent twice
  });

  it("gives up after a bounded number of attempts without progress", async () => {
    const blob = content(2 * PIECE_BYTES);
    const server = new FakeRecords(blob.size);
    server.cuts.set(1, 10); // less than a row: nothing stored
    const transport = server.transport();
    const fetch = server.fetch;
    let calls = 0;
    (transport as unknown as { fetch: typeof fetch }).fetch = async (input, init) => {
      calls += 1;
      if (calls > 2) server.down = true; // the network is gone for good
      return fetch(input, init);
    };
    await assert.rejects(resumableUpload(transport, RECORD, 1, blob, { attempts: 4, ...noPause }), Unavailable);
    assert.ok(calls <= 2 + 8, `${calls} requests`);
  });
});

/** The fake, with every PATCH answer rewritten by `lie` (a malicious server). */
function lying(server: FakeRecords, lie: (answer: Response, patch: number) => Response): GatewayTransport {
  const honest = server.fetch;
  server.fetch = async (input, init) => {
    const answer = await honest(input, init);
    return (init?.method ?? "GET") === "PATCH" ? lie(answer, server.patches) : answer;
  };
  return server.transport();
}

describe("resumable upload against a malicious server", () => {
  it("a 204 that does not move the offset is a protocol error, not a reason to send again", async () => {
    const blob = content(3 * ROW_BYTES);
    const server = new FakeRecords(blob.size);
    const transport = lying(server, () =>
      new Response(null, { status: 204, headers: { "upload-offset": "0", "upload-complete": "?0" } }));
    await assert.rejects(resumableUpload(transport, RECORD, 1, blob, { pieceBytes: ROW_BYTES, ...noPause }),
      UploadProtocolError);
    assert.equal(server.patches, 1);
  });

  it("a 'complete' on a piece that was not the last is refused", async () => {
    const blob = content(2 * PIECE_BYTES + 5);
    const server = new FakeRecords(blob.size);
    const transport = lying(server, () => new Response(null, {
      status: 204, headers: { "upload-offset": String(blob.size), "upload-complete": "?1" },
    }));
    await assert.rejects(resumableUpload(transport, RECORD, 1, blob, noPause), UploadProtocolError);
    assert.equal(server.patches, 1);
  });

  it("an offset moved back and forth cannot renew the failure budget for ever", async () => {
    const blob = content(4 * ROW_BYTES);
    const server = new FakeRecords(blob.size);
    const honest = server.fetch;
    let heads = 0;
    server.fetch = async (input, init) => {
      const method = init?.method ?? "GET";
      if (method === "PATCH") {
        server.patches += 1;
        return Response.json({ status: 503 }, { status: 503 });
      }
      if (method === "HEAD") {
        heads += 1; // alternately "one row further" and "back to the start"
        const offset = heads % 2 === 1 ? ROW_BYTES : 0;
        return new Response(null, { status: 204, headers: { "upload-offset": String(offset), "upload-complete": "?0" } });
      }
      return honest(input, init);
    };
    await assert.rejects(resumableUpload(server.transport(), RECORD, 1, blob, { attempts: 4, ...noPause }), Unavailable);
    assert.ok(server.patches <= 8, `${server.patches} pieces sent`);
  });
});
