/**
 * Node helpers for files: a spool of ciphertext in a temporary file (uploads with bounded
 * memory, read back as a file-backed Blob), and downloads written to a temporary file that
 * is renamed into place only once the whole content verified.
 *
 * Node only: the browser entry point does not import this module.
 */

import { randomBytes } from "node:crypto";
import { openAsBlob } from "node:fs";
import { mkdtemp, open, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, basename, join } from "node:path";

import type { Records, RecordInfo } from "./records.ts";
import type { Spool } from "./content.ts";

/** Ciphertext spooled to a 0600 file in a private temporary folder, removed by `discard`. */
export function nodeFileSpool(dir?: string): Spool {
  let folder: string | undefined;
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  let path: string | undefined;
  return {
    async write(chunk) {
      if (handle === undefined) {
        folder = await mkdtemp(join(dir ?? tmpdir(), "ecrin-upload-"));
        path = join(folder, "content.ciphertext");
        handle = await open(path, "wx", 0o600);
      }
      await handle.write(chunk);
    },
    async finish() {
      if (handle === undefined || path === undefined) return new Blob([]);
      await handle.close();
      handle = undefined;
      return openAsBlob(path);
    },
    async discard() {
      await handle?.close().catch(() => undefined);
      handle = undefined;
      if (folder !== undefined) await rm(folder, { recursive: true, force: true });
      folder = undefined;
    },
  };
}

/**
 * Stream-decrypt a version into `path`, written only if everything verifies: the plaintext
 * goes to a 0600 temporary file beside it, renamed into place after the last chunk
 * verified, removed otherwise. The file is opened before the first byte is awaited, so
 * that no late open can recreate it after a failure removed it.
 */
export async function downloadToFile(records: Records, recordId: string, path: string, version?: number): Promise<RecordInfo> {
  const { info, content } = await records.openContent(recordId, version);
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString("hex")}.part`);
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(tmp, "wx", 0o600);
    for await (const piece of content as unknown as AsyncIterable<Uint8Array>) {
      for (let at = 0; at < piece.length;) at += (await handle.write(piece, at, piece.length - at)).bytesWritten;
    }
    await handle.close();
    handle = undefined;
    await rename(tmp, path);
  } catch (error) {
    await content.cancel().catch(() => undefined);
    await handle?.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw error;
  }
  return info;
}
