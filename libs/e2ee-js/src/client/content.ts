/**
 * Streaming record content through the crypto core with bounded memory.
 *
 * Encryption writes ciphertext chunks into a `Spool` as they are made (the header needs the
 * digest of the whole ciphertext before the upload can start); decryption pipes the HTTP
 * body through the core's `byteTransform`, which holds at most two chunks. Any failure of
 * the core (a chunk that does not authenticate, a stream cut or extended) surfaces as the
 * one `IntegrityError` of the SDK, as an error of the plaintext stream.
 */

import {
  DecryptionError, iterate, RecordEncryptor, type ByteSource, type IdentityKeys, type OffThread, type PublicIdentity, type RecordDecryptor, type RecordHeader, type ScopeKey,
} from "./core.ts";
import { integrityFailure, Unavailable } from "./errors.ts";
import type { RecordMetadata } from "./metadata.ts";

/** Where ciphertext waits between encryption and upload. */
export interface Spool {
  write(chunk: Uint8Array): Promise<void>;
  /** All that was written, as a Blob the upload can read as often as it retries. */
  finish(): Promise<Blob>;
  discard(): Promise<void>;
}

/**
 * A Blob (the portable default). Chunks are folded into the Blob every 1 MiB, so the
 * JavaScript heap holds at most that much: browsers keep Blob data out of the page's heap
 * and may page large ones to disk. Node's Blobs stay in memory: use `nodeFileSpool`.
 */
export function memorySpool(): Spool {
  const FOLD = 1 << 20;
  let blob = new Blob([]);
  let parts: Uint8Array<ArrayBuffer>[] = [];
  let held = 0;
  const fold = (): void => {
    blob = new Blob([blob, ...parts]);
    parts = [];
    held = 0;
  };
  return {
    write: async (chunk) => {
      parts.push(chunk as Uint8Array<ArrayBuffer>);
      held += chunk.length;
      if (held >= FOLD) fold();
    },
    finish: async () => {
      fold();
      return blob;
    },
    discard: async () => {
      parts = [];
      blob = new Blob([]);
    },
  };
}

export interface SealOptions {
  fileId: string;
  recordId: string;
  recordVersion: number;
  scopeKey: ScopeKey;
  author: IdentityKeys;
  metadata: RecordMetadata;
}

/** Encrypt `content` chunk by chunk into `spool`. -> the signed header, metadata ciphertext, length */
export async function encryptInto(spool: Spool, options: SealOptions, content: Uint8Array | Blob | ReadableStream<Uint8Array>,
  worker?: OffThread): Promise<{ header: RecordHeader; metadataCiphertext: Uint8Array; length: number }> {
  const source = content instanceof Blob ? content.stream() : content instanceof Uint8Array ? [content] : content;
  const sealOptions = { ...options, metadata: { ...options.metadata } };
  let length = 0;
  if (worker === undefined) {
    const encryptor = new RecordEncryptor(sealOptions);
    for await (const chunk of encryptor.encrypt(source)) {
      length += chunk.length;
      await spool.write(chunk);
    }
    return { header: encryptor.header, metadataCiphertext: encryptor.metadataCiphertext, length };
  }
  return encryptInWorker(spool, worker, sealOptions, source);
}

async function encryptInWorker(spool: Spool, worker: OffThread, sealOptions: SealOptions, source: ByteSource
): Promise<{ header: RecordHeader; metadataCiphertext: Uint8Array; length: number }> {
  let length = 0;
  const encryptor = worker.encryptor(sealOptions);
  const write = async (chunks: Uint8Array[]): Promise<void> => {
    for (const chunk of chunks) {
      length += chunk.length;
      await spool.write(chunk);
    }
  };
  for await (const piece of iterate(source)) await write(await encryptor.update(piece));
  await write(await encryptor.finish());
  return { ...(await encryptor.result), length };
}

/** The verified plaintext of a content download; errors with `IntegrityError` on any failure. */
export interface Opening {
  /** Already checked on this thread (signatures, DEK, metadata). */
  decryptor: RecordDecryptor;
  metadataCiphertext: Uint8Array;
  scopeKey: ScopeKey;
  author: PublicIdentity;
  wrapper: PublicIdentity;
}

/** The verified plaintext of a content download; errors with `IntegrityError` on any failure.
 * With a worker, the chunks are opened there (the same checks, off this thread). */
export function decryptChunks(opening: Opening, body: ReadableStream<Uint8Array>, worker?: OffThread
): ReadableStream<Uint8Array> {
  const { decryptor, metadataCiphertext, scopeKey, author, wrapper } = opening;
  const transform = worker === undefined ? decryptor.byteTransform()
    : worker.decryptor(decryptor.header, metadataCiphertext, { scopeKey, author, wrapper }).transform();
  const plain = body.pipeThrough(transform);
  const reader = plain.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        // The worker's failures arrive as plain Errors: anything but a broken connection is
        // the one integrity failure (a TypeError is what fetch's body throws when cut).
        controller.error(error instanceof TypeError && !(error instanceof DecryptionError)
          ? new Unavailable("the download was interrupted; nothing was kept") : integrityFailure());
      }
    },
    cancel: (reason) => reader.cancel(reason),
  });
}
