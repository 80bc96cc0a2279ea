/**
 * The off-main-thread entry: Argon2id and large-file encryption and decryption run here,
 * in a Web Worker (browsers) or a worker_threads Worker (Node), driven by `offthread.ts`.
 *
 * Messages are `{id, op, ...}` requests answered by `{id, ok: true, result}` or
 * `{id, ok: false, error: {name, message}}`; byte arrays are transferred, not copied.
 * Keys cross the boundary as raw bytes inside this process only; nothing here logs.
 *
 * Requests:
 * - `argon2id {password, salt, opslimit, memlimit}` -> 32 bytes;
 * - `encrypt-start {stream, options}` / `encrypt-update {stream, piece}` -> chunks /
 *   `encrypt-finish {stream}` -> `{chunks, header, metadataCiphertext}`;
 * - `decrypt-start {stream, header, metadataCiphertext, scopeKey, author, wrapper}` ->
 *   `{contentLength, metadata}` / `decrypt-update {stream, piece}` -> plaintext pieces
 *   (any piece sizes: the decryptor re-chunks) / `decrypt-finish {stream}`;
 * - `abort {stream}` drops a stream's state.
 */

import { IdentityKeys, PublicIdentity, type PublicIdentityJson } from "./identity.ts";
import { KdfParams, argon2id } from "./kdf.ts";
import { ScopeKey, type Scope } from "./keyring.ts";
import { RecordDecryptor, RecordEncryptor, type Metadata } from "./records.ts";
import type { Uuid } from "./_wire.ts";

export interface ScopeKeyMessage {
  fileId: Uuid;
  scope: Scope;
  version: number;
  key: Uint8Array;
}

export interface EncryptStartMessage {
  fileId: Uuid;
  recordId: Uuid;
  recordVersion: number;
  scopeKey: ScopeKeyMessage;
  author: { accountId: Uuid; keys: Uint8Array };
  metadata: Metadata;
}

export type Request = { id: number } & (
  | { op: "argon2id"; password: Uint8Array; salt: Uint8Array; opslimit: number; memlimit: number }
  | { op: "encrypt-start"; stream: number; options: EncryptStartMessage }
  | { op: "encrypt-update"; stream: number; piece: Uint8Array }
  | { op: "encrypt-finish"; stream: number }
  | {
    op: "decrypt-start"; stream: number; header: Uint8Array; metadataCiphertext: Uint8Array;
    scopeKey: ScopeKeyMessage; author: PublicIdentityJson; wrapper: PublicIdentityJson | null;
  }
  | { op: "decrypt-update"; stream: number; piece: Uint8Array }
  | { op: "decrypt-finish"; stream: number }
  | { op: "abort"; stream: number }
);

export type Response =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string } };

const encryptors = new Map<number, RecordEncryptor>();
const decryptors = new Map<number, RecordDecryptor>();

function scopeKeyOf(m: ScopeKeyMessage): ScopeKey {
  return new ScopeKey(m.fileId, m.scope, m.version, m.key);
}

function need<T>(map: Map<number, T>, stream: number): T {
  const value = map.get(stream);
  if (value === undefined) throw new Error("unknown stream");
  return value;
}

/** Handle one request; returns the result and the buffers to transfer with it. */
export function handle(request: Request): [unknown, ArrayBuffer[]] {
  switch (request.op) {
    case "argon2id": {
      const out = argon2id(request.password, request.salt, new KdfParams(request.opslimit, request.memlimit));
      request.password.fill(0);
      return [out, [out.buffer as ArrayBuffer]];
    }
    case "encrypt-start": {
      const o = request.options;
      const author = IdentityKeys.fromBytes(o.author.accountId, o.author.keys);
      o.author.keys.fill(0);
      encryptors.set(request.stream, new RecordEncryptor({
        fileId: o.fileId, recordId: o.recordId, recordVersion: o.recordVersion,
        scopeKey: scopeKeyOf(o.scopeKey), author, metadata: o.metadata,
      }));
      o.scopeKey.key.fill(0);
      return [null, []];
    }
    case "encrypt-update": {
      const chunks = need(encryptors, request.stream).update(request.piece);
      return [chunks, chunks.map((c) => c.buffer as ArrayBuffer)];
    }
    case "encrypt-finish": {
      const enc = need(encryptors, request.stream);
      encryptors.delete(request.stream);
      const chunks = enc.finish();
      const header = enc.header.toBytes();
      return [{ chunks, header, metadataCiphertext: enc.metadataCiphertext },
        [...chunks.map((c) => c.buffer as ArrayBuffer), header.buffer as ArrayBuffer]];
    }
    case "decrypt-start": {
      const dec = new RecordDecryptor(request.header, request.metadataCiphertext, {
        scopeKey: scopeKeyOf(request.scopeKey),
        author: PublicIdentity.fromJSON(request.author),
        wrapper: request.wrapper ? PublicIdentity.fromJSON(request.wrapper) : null,
      });
      request.scopeKey.key.fill(0);
      decryptors.set(request.stream, dec);
      return [{ contentLength: dec.contentLength, metadata: dec.metadata }, []];
    }
    case "decrypt-update": {
      const dec = need(decryptors, request.stream);
      try {
        const plain = dec.updateBytes(request.piece).map((p) => p.slice());
        return [plain, plain.map((p) => p.buffer as ArrayBuffer)];
      } catch (e) {
        decryptors.delete(request.stream);
        throw e;
      }
    }
    case "decrypt-finish": {
      const dec = need(decryptors, request.stream);
      decryptors.delete(request.stream);
      dec.finish();
      return [null, []];
    }
    case "abort":
      encryptors.delete(request.stream);
      decryptors.delete(request.stream);
      return [null, []];
  }
}

function respond(request: Request): [Response, ArrayBuffer[]] {
  try {
    const [result, transfer] = handle(request);
    return [{ id: request.id, ok: true, result }, transfer];
  } catch (e) {
    const error = e instanceof Error ? { name: e.name, message: e.message } : { name: "Error", message: "worker error" };
    return [{ id: request.id, ok: false, error }, []];
  }
}

interface Port {
  postMessage(message: unknown, transfer?: ArrayBuffer[]): void;
}

type WorkerThreads = {
  parentPort: (Port & { on(event: "message", listener: (m: Request) => void): void }) | null;
  workerData: unknown;
};
/** A browser worker's first message: it handles requests from now on. */
export const READY = { ready: "ecrin-e2ee" } as const;

/** Set by offthread.ts on the workers it starts: anyone else importing this module (the
 * inline mode, or an app's own worker) is left alone. */
const WORKER_NAME = "ecrin-e2ee";
const threads = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
  .process?.getBuiltinModule?.("node:worker_threads") as WorkerThreads | undefined;

if (threads?.parentPort && (threads.workerData as Record<string, unknown> | null)?.[WORKER_NAME] === true) {
  const port = threads.parentPort;
  port.on("message", (request) => {
    const [response, transfer] = respond(request);
    port.postMessage(response, transfer);
  });
} else if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined"
  && (globalThis as { name?: string }).name === WORKER_NAME) {
  const scope = globalThis as unknown as Port & { onmessage: ((e: MessageEvent<Request>) => void) | null };
  scope.onmessage = (event) => {
    const [response, transfer] = respond(event.data);
    scope.postMessage(response, transfer);
  };
  // This module ran only once libsodium was ready (top-level await): a message posted
  // before now was dispatched to no handler, so the proxy waits for this one to send any.
  scope.postMessage(READY);
}
