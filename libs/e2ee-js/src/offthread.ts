/**
 * A small promise-based proxy to `worker.ts`, so that Argon2id and large-file encryption
 * never block the main thread (a browser tab, or Node's event loop).
 *
 *     const off = await OffThread.start();                 // Node: worker_threads
 *     const off = await OffThread.start({ workerUrl });    // browser: a module Worker
 *     const keys = await off.deriveAccountKeys(passphrase, salt, params);
 *     const enc = off.encryptor({ fileId, recordId, recordVersion: 1, scopeKey, author, metadata });
 *     await file.stream().pipeThrough(enc.transform()).pipeTo(upload);
 *     const { header, metadataCiphertext } = await enc.result;
 *     off.terminate();
 *
 * In a browser, `workerUrl` is the URL of the bundled `worker.ts` (bundlers emit it as its
 * own module: `new URL("@ecrin/e2ee/worker", import.meta.url)` or a build step). In Node
 * the default is `worker.ts` next to this file; `{ inline: true }` runs the same handler on
 * the calling thread (for tests and for tools that have no event loop to protect).
 */

import { passphraseBytes, accountKeysFromMaster, type AccountKeys, type KdfParams } from "./kdf.ts";
import { DecryptionError, E2EEError, FormatError, IdentityMismatchError, InvalidCode } from "./errors.ts";
import type { IdentityKeys, PublicIdentity } from "./identity.ts";
import {
  draftInvitation, openInvitation, redeemable, sealInvitation, type CreatedInvitation, type InvitationCode,
  type InvitationPayload, type RedeemedInvitation,
} from "./invitation.ts";
import type { ScopeKey } from "./keyring.ts";
import { RecordHeader } from "./record_header.ts";
import type { Metadata } from "./records.ts";
import type { Uuid } from "./_wire.ts";
import type { Request, Response, ScopeKeyMessage } from "./worker.ts";

/** Marks the workers this module starts, so that worker.ts never answers anyone else. */
const WORKER_NAME = "ecrin-e2ee";

/** What `OffThread` needs of a worker (a DOM Worker or a worker_threads Worker fit). */
interface WorkerLike {
  postMessage(message: unknown, transfer: ArrayBuffer[]): void;
  terminate(): unknown;
  /** Node's worker_threads: whether the worker keeps the process alive. */
  ref?(): void;
  unref?(): void;
}

type Pending = { resolve(value: unknown): void; reject(error: Error): void };
type RequestBody = Request extends infer R ? R extends { id: number } ? Omit<R, "id"> : never : never;

const ERRORS: Record<string, new (message?: string) => Error> = {
  FormatError, IdentityMismatchError, InvalidCode, E2EEError,
};

function rebuild(error: { name: string; message: string }): Error {
  if (error.name === "DecryptionError") return new DecryptionError();
  const cls = ERRORS[error.name];
  return cls ? new cls(error.message) : new E2EEError(error.message);
}

function scopeKeyMessage(key: ScopeKey): ScopeKeyMessage {
  return { fileId: key.fileId, scope: key.scope, version: key.version, key: key.toBytes() };
}

export interface OffThreadOptions {
  /** Browser: the URL of the bundled worker module. Node: overrides `worker.ts`. */
  /** Also a Trusted Types `TrustedScriptURL` (a page whose CSP requires Trusted Types):
   * passed to the Worker constructor as it is. */
  workerUrl?: URL | string | { toString(): string };
  /** Run on the calling thread (no worker): tests and command-line tools only. */
  inline?: boolean;
}

/** Streaming record encryption in the worker. */
export interface OffThreadEncryptor {
  update(piece: Uint8Array): Promise<Uint8Array[]>;
  finish(): Promise<Uint8Array[]>;
  /** Plaintext pieces in, ciphertext chunks out. */
  transform(): TransformStream<Uint8Array, Uint8Array>;
  /** Settles once `finish` (or the transform's end) sealed the header. */
  readonly result: Promise<{ header: RecordHeader; metadataCiphertext: Uint8Array }>;
}

/** Streaming record decryption in the worker (ciphertext in any piece sizes). */
export interface OffThreadDecryptor {
  readonly opened: Promise<{ contentLength: number; metadata: Metadata }>;
  update(piece: Uint8Array): Promise<Uint8Array[]>;
  finish(): Promise<void>;
  transform(): TransformStream<Uint8Array, Uint8Array>;
}

export class OffThread {
  #worker: WorkerLike | null;
  #inline: ((request: Request) => Promise<Response>) | null;
  #pending = new Map<number, Pending>();
  #next = 1;

  private constructor(worker: WorkerLike | null, inline: ((request: Request) => Promise<Response>) | null) {
    this.#worker = worker;
    this.#inline = inline;
  }

  /** Start a worker (Node: worker_threads; browser: a module Worker at `workerUrl`). */
  static async start(options: OffThreadOptions = {}): Promise<OffThread> {
    if (options.inline) {
      const { handle } = await import("./worker.ts");
      return new OffThread(null, async (request) => {
        try {
          return { id: request.id, ok: true, result: handle(request)[0] };
        } catch (e) {
          const err = e instanceof Error ? e : new Error("worker error");
          return { id: request.id, ok: false, error: { name: err.name, message: err.message } };
        }
      });
    }
    const threads = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } })
      .process?.getBuiltinModule?.("node:worker_threads") as {
        Worker: new (url: URL | string, options: { workerData: unknown }) => WorkerLike & {
          on(event: string, listener: (value: never) => void): void; ref(): void; unref(): void;
        };
      } | undefined;
    if (threads) {
      const worker = new threads.Worker(options.workerUrl as URL | string | undefined ?? new URL("./worker.ts", import.meta.url),
        { workerData: { [WORKER_NAME]: true } });
      const off = new OffThread(worker, null);
      worker.on("message", (m: Response) => off.#settle(m));
      worker.on("error", (e: Error) => off.#failAll(e));
      worker.unref(); // idle: never keeps a Node process alive (referenced while calls are pending)
      return off;
    }
    if (options.workerUrl === undefined) throw new TypeError("in a browser, pass the bundled worker's URL as workerUrl");
    const worker = new Worker(options.workerUrl as URL | string, { type: "module", name: WORKER_NAME });
    const off = new OffThread(worker, null);
    // A module worker awaits libsodium before it listens: what is posted earlier is lost.
    // Nothing is sent before its READY message (worker.ts).
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<unknown>) => {
        if ((e.data as { ready?: unknown } | null)?.ready !== WORKER_NAME) return;
        worker.onmessage = (m: MessageEvent<Response>) => off.#settle(m.data);
        worker.onerror = (m: ErrorEvent) => off.#failAll(new Error(m.message || "worker failed"));
        resolve();
      };
      worker.onerror = (e: ErrorEvent) => {
        worker.terminate();
        reject(new Error(e.message || "the worker failed to start"));
      };
    });
    return off;
  }

  #settle(response: Response): void {
    const pending = this.#pending.get(response.id);
    if (!pending) return;
    this.#forget(response.id);
    if (response.ok) pending.resolve(response.result);
    else pending.reject(rebuild(response.error));
  }

  #failAll(error: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#worker?.unref?.();
    for (const p of pending) p.reject(error);
  }

  /**
   * A Node worker is referenced exactly while a call is pending: an idle one never keeps
   * the process alive, and a process whose only work left is in the worker (a script
   * awaiting an Argon2id at top level) does not exit in the middle of it.
   */
  #remember(id: number, pending: Pending): void {
    this.#pending.set(id, pending);
    if (this.#pending.size === 1) this.#worker?.ref?.();
  }

  #forget(id: number): void {
    if (this.#pending.delete(id) && this.#pending.size === 0) this.#worker?.unref?.();
  }

  #call<T>(body: RequestBody, transfer: ArrayBuffer[] = []): Promise<T> {
    const id = this.#next++;
    const request = { ...body, id } as Request;
    return new Promise<T>((resolve, reject) => {
      if (this.#inline) {
        this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        void this.#inline(request).then((r) => this.#settle(r));
      } else if (this.#worker) {
        this.#remember(id, { resolve: resolve as (v: unknown) => void, reject });
        try {
          this.#worker.postMessage(request, transfer);
        } catch (error) {
          this.#forget(id); // not sent: nothing to wait for
          reject(error as Error);
        }
      } else {
        reject(new Error("the worker was terminated"));
      }
    });
  }

  /** Argon2id(password, salt, params) in the worker: 32 bytes. */
  argon2id(password: Uint8Array, salt: Uint8Array, params: KdfParams): Promise<Uint8Array> {
    const copy = Uint8Array.from(password);
    return this.#call({ op: "argon2id", password: copy, salt: Uint8Array.from(salt),
      opslimit: params.opslimit, memlimit: params.memlimit }, [copy.buffer]);
  }

  /** `deriveAccountKeys` with the Argon2id in the worker. */
  async deriveAccountKeys(passphrase: string | Uint8Array, salt: Uint8Array, params: KdfParams): Promise<AccountKeys> {
    const master = await this.argon2id(passphraseBytes(passphrase), salt, params);
    try {
      return accountKeysFromMaster(master);
    } finally {
      master.fill(0);
    }
  }

  /** `createInvitation` with the Argon2id of the code in the worker. */
  async createInvitation(scopeKeys: readonly ScopeKey[], options: { inviter: IdentityKeys; params?: KdfParams }): Promise<CreatedInvitation> {
    const draft = draftInvitation(scopeKeys, options.params);
    const key = await this.argon2id(draft.code.toBytes(), draft.salt, draft.params);
    try {
      return sealInvitation(scopeKeys, options.inviter, draft, key);
    } finally {
      key.fill(0);
    }
  }

  /** `redeemInvitation` with the Argon2id of the code in the worker. */
  async redeemInvitation(code: InvitationCode, payload: InvitationPayload, redeemer: PublicIdentity): Promise<RedeemedInvitation> {
    if (!redeemable(code, payload)) throw new DecryptionError();
    let key: Uint8Array;
    try {
      key = await this.argon2id(code.toBytes(), payload.salt, payload.params);
    } catch {
      throw new DecryptionError();
    }
    try {
      return openInvitation(code, payload, redeemer, key);
    } finally {
      key.fill(0);
    }
  }

  /** A record encryptor running in the worker. */
  encryptor(options: {
    fileId: Uuid; recordId: Uuid; recordVersion: number; scopeKey: ScopeKey; author: IdentityKeys; metadata: Metadata;
  }): OffThreadEncryptor {
    const stream = this.#next++;
    const keys = options.author.toBytes();
    const started = this.#call<null>({
      op: "encrypt-start", stream, options: {
        fileId: options.fileId, recordId: options.recordId, recordVersion: options.recordVersion,
        scopeKey: scopeKeyMessage(options.scopeKey), author: { accountId: options.author.accountId, keys },
        metadata: options.metadata,
      },
    });
    let settle!: (v: { header: RecordHeader; metadataCiphertext: Uint8Array }) => void;
    let fail!: (e: Error) => void;
    const result = new Promise<{ header: RecordHeader; metadataCiphertext: Uint8Array }>((res, rej) => {
      settle = res;
      fail = rej;
    });
    result.catch(() => undefined);
    const update = async (piece: Uint8Array): Promise<Uint8Array[]> => {
      await started;
      const copy = Uint8Array.from(piece);
      return this.#call<Uint8Array[]>({ op: "encrypt-update", stream, piece: copy }, [copy.buffer]);
    };
    const finish = async (): Promise<Uint8Array[]> => {
      try {
        await started;
        const r = await this.#call<{ chunks: Uint8Array[]; header: Uint8Array; metadataCiphertext: Uint8Array }>(
          { op: "encrypt-finish", stream });
        settle({ header: RecordHeader.fromBytes(r.header), metadataCiphertext: r.metadataCiphertext });
        return r.chunks;
      } catch (e) {
        fail(e as Error);
        throw e;
      }
    };
    return {
      update, finish, result,
      transform: () => new TransformStream<Uint8Array, Uint8Array>({
        async transform(piece, controller) {
          for (const c of await update(piece)) controller.enqueue(c);
        },
        async flush(controller) {
          for (const c of await finish()) controller.enqueue(c);
        },
      }),
    };
  }

  /** A record decryptor running in the worker; see records.ts on late failures. */
  decryptor(header: RecordHeader | Uint8Array, metadataCiphertext: Uint8Array, options: {
    scopeKey: ScopeKey; author: PublicIdentity; wrapper?: PublicIdentity | null;
  }): OffThreadDecryptor {
    const stream = this.#next++;
    const opened = this.#call<{ contentLength: number; metadata: Metadata }>({
      op: "decrypt-start", stream,
      header: header instanceof RecordHeader ? header.toBytes() : Uint8Array.from(header),
      metadataCiphertext: Uint8Array.from(metadataCiphertext), scopeKey: scopeKeyMessage(options.scopeKey),
      author: options.author.toJSON(), wrapper: options.wrapper ? options.wrapper.toJSON() : null,
    });
    opened.catch(() => undefined);
    const update = async (piece: Uint8Array): Promise<Uint8Array[]> => {
      await opened;
      const copy = Uint8Array.from(piece);
      return this.#call<Uint8Array[]>({ op: "decrypt-update", stream, piece: copy }, [copy.buffer]);
    };
    const finish = async (): Promise<void> => {
      await opened;
      await this.#call<null>({ op: "decrypt-finish", stream });
    };
    return {
      opened, update, finish,
      transform: () => new TransformStream<Uint8Array, Uint8Array>({
        async transform(piece, controller) {
          for (const p of await update(piece)) controller.enqueue(p);
        },
        async flush() {
          await finish();
        },
      }),
    };
  }

  /** Stop the worker; pending calls fail. */
  terminate(): void {
    const worker = this.#worker;
    this.#worker = null;
    this.#inline = null;
    worker?.terminate();
    this.#failAll(new Error("the worker was terminated"));
  }
}
