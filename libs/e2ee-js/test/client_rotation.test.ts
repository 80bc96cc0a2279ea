/**
 * Re-keying after a rotation waits out a busy server: the listing of headers and a batch
 * answered 503 (Retry-After) are sent again through the client's retry of idempotent calls
 * (a batch is all or nothing, and applying it twice changes nothing), as the Python SDK does.
 */

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { b64e } from "../src/_wire.ts";
import { IdentityKeys } from "../src/identity.ts";
import { ScopeKey, sealEntry } from "../src/keyring.ts";
import { RecordEncryptor } from "../src/records.ts";
import { Unavailable } from "../src/client/index.ts";
import { Records } from "../src/client/records.ts";
import { Rotations } from "../src/client/rotation.ts";
import { fakeClient } from "./support/fake-client.ts";

const FILE = "55555555-5555-4555-8555-555555555555";
const RECORD = "66666666-6666-4666-8666-666666666666";

/** A server whose first answer to each of `busy` is a 503, after applying the request. */
function world(busy: string[]) {
  const me = IdentityKeys.generate(crypto.randomUUID());
  const old = ScopeKey.generate(FILE, "clinical", 1);
  const metadata = { title: "Bilan", kind: "bilan", content_type: "text/plain", size: 2, created_at: new Date().toISOString() };
  const enc = new RecordEncryptor({ fileId: FILE, recordId: RECORD, recordVersion: 1, scopeKey: old, author: me, metadata });
  assert.ok([...enc.encryptSync([new TextEncoder().encode("ok")])].length > 0); // the header is final once sealed
  const entry = sealEntry(old, me.publicIdentity(), { relationship: "owner", permissions: ["read", "append"], granter: me });
  const seen: string[] = [];
  const applied: unknown[] = [];
  const answers: Record<string, (init?: RequestInit) => Response> = {
    "GET /v1/records/headers": () => Response.json({
      items: applied.length ? [] : [{ record_id: RECORD, version: 1, header: b64e(enc.header.toBytes()) }], next_cursor: null,
    }),
    "POST /v1/records/rekey": (init) => {
      applied.push(JSON.parse(String(init?.body)));
      return Response.json({ rekeyed: 1 });
    },
    [`GET /v1/keyrings/${FILE}/entries`]: () => Response.json({ versions: { clinical: 1 }, entries: [entry.toJSON()] }),
  };
  const fetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const what = `${init?.method ?? "GET"} ${new URL(String(url)).pathname}`;
    seen.push(what);
    const answer = answers[what]!(init);
    if (busy.includes(what)) {
      busy.splice(busy.indexOf(what), 1);
      return Response.json({ type: "about:blank", title: "busy", status: 503 }, { status: 503, headers: { "retry-after": "0" } });
    }
    return answer;
  };
  const client = fakeClient(me, fetch);
  let retries = 0;
  client.retrying = async <T>(call: () => Promise<T>) => {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof Unavailable)) throw error;
      retries += 1;
      return await call();
    }
  };
  return { rotations: new Rotations(new Records(client, me)), seen, applied, retries: () => retries };
}

describe("re-keying on a busy server", () => {
  it("sends the listing and the batch again, and re-keys every record", async () => {
    const w = world(["GET /v1/records/headers", "POST /v1/records/rekey"]);
    const result = await w.rotations.rekey(FILE, "clinical", ScopeKey.generate(FILE, "clinical", 2), []);
    assert.deepEqual(result, { rekeyed: 1, skipped: 0 });
    assert.equal(w.retries(), 2);
    assert.equal(w.seen.filter((s) => s === "POST /v1/records/rekey").length, 2);
    assert.equal(w.applied.length, 2); // applied, answered 503, sent again: the same batch
    assert.deepEqual(w.applied[0], w.applied[1]);
  });
});
