/**
 * Uploading a version's content ciphertext so that a dropped connection costs one piece at
 * most, not the whole document (the records API's resumable uploads, docs/records.md).
 *
 * The ciphertext is already spooled (a Blob: `content.ts`), so any part of it can be sent
 * again. A session is opened (`POST …/content/uploads`), then the spool goes up in pieces
 * (`PATCH` with `Upload-Offset`, a whole number of the server's 1 MiB rows: 8 MiB at first,
 * doubling up to 32 MiB while each piece goes up in under a second, halved after a failure);
 * after a network error or a 5xx, the SDK asks where the server stands (`HEAD`) and goes on
 * from there, with a bounded number of attempts that store nothing new and a growing pause.
 * Progress counts only what the server acknowledged (the `Upload-Offset` of its answers),
 * never what left this device.
 */

import { Conflict, EcrinError, IntegrityError, ServerError, Unavailable } from "./errors.ts";
import type { GatewayTransport } from "./transport.ts";

/** Bytes the server acknowledged so far, of `total`. */
export type UploadProgress = (acknowledged: number, total: number) => void;

/** The server's rows: every piece but the last is a whole number of them. */
export const ROW_BYTES = 1 << 20;
/** Bytes of the first PATCH: what a cut costs at most, and how often progress moves. */
export const PIECE_BYTES = 8 * ROW_BYTES;
/** Pieces double up to this size while each one goes up in under `QUICK_PIECE_MS`: on a fast
 * link fewer requests (a 100 MiB document in 5 instead of 13), on a slow one still small. */
export const MAX_PIECE_BYTES = 32 * ROW_BYTES;
export const QUICK_PIECE_MS = 1000;

export interface UploadOptions {
  onProgress?: UploadProgress;
  /** Bytes of the first piece, a multiple of `ROW_BYTES` (default `PIECE_BYTES`). */
  pieceBytes?: number;
  /** The largest piece, a multiple of `ROW_BYTES` (default `MAX_PIECE_BYTES`; never below
   * the first piece). */
  maxPieceBytes?: number;
  /** A piece that went up faster than this (ms) makes the next one twice as big. */
  quickPieceMs?: number;
  /** Failed attempts in a row, without the server storing anything new, before giving up. */
  attempts?: number;
  /** Pause before the n-th retry (ms); tests make it 0. */
  backoffMs?: (failures: number, retryAfterS?: number) => number;
}

const defaultBackoff = (failures: number, retryAfterS?: number): number =>
  1000 * Math.min(retryAfterS ?? 0.5 * 2 ** (failures - 1), 8);

interface State {
  offset: number;
  complete: boolean;
}

function stateOf(response: Response, fallback: State): State {
  const offset = Number(response.headers.get("upload-offset"));
  const complete = response.headers.get("upload-complete");
  return {
    offset: Number.isSafeInteger(offset) && offset >= 0 ? offset : fallback.offset,
    complete: complete === null ? fallback.complete : complete.trim() === "?1",
  };
}

/** The server's answers do not follow the resumable-upload protocol: it cannot be trusted to
 * hold the document (one that would keep the device sending, or call a partial upload complete). */
export class UploadProtocolError extends IntegrityError {}

/** `state` as the server stated it, if possible at all: an offset within the content, on a row
 * boundary or at its end, complete only at its end; after a stored piece (`piece`: its start
 * and end), exactly that piece's end, complete only when it was the last. */
function checked(state: State, total: number, piece?: [number, number]): State {
  const { offset, complete } = state;
  if (offset > total || (offset % ROW_BYTES !== 0 && offset !== total) || (complete && offset !== total)) {
    throw new UploadProtocolError(`the server states an impossible upload state (offset ${offset} of ${total}, ` +
      `complete=${complete})`);
  }
  if (piece !== undefined && (offset !== piece[1] || complete !== (piece[1] === total))) {
    throw new UploadProtocolError(`the server acknowledged the piece ${piece[0]}-${piece[1]} of ${total} bytes ` +
      `with offset ${offset}, complete=${complete}`);
  }
  return state;
}

/** Upload `blob` as the content of `recordId`'s `version` (its author only), resuming after
 * network errors; resolves once the version is committed. */
export async function resumableUpload(t: GatewayTransport, recordId: string, version: number, blob: Blob,
  options: UploadOptions = {}): Promise<void> {
  const total = blob.size;
  const progress = options.onProgress ?? (() => undefined);
  const attempts = options.attempts ?? 6;
  const backoff = options.backoffMs ?? defaultBackoff;
  let piece = options.pieceBytes ?? PIECE_BYTES;
  if (piece < ROW_BYTES || piece % ROW_BYTES !== 0) throw new RangeError("pieceBytes must be a multiple of 1 MiB");
  const maxPiece = Math.max(piece, options.maxPieceBytes ?? MAX_PIECE_BYTES);
  if (maxPiece % ROW_BYTES !== 0) throw new RangeError("maxPieceBytes must be a multiple of 1 MiB");
  const quickMs = options.quickPieceMs ?? QUICK_PIECE_MS;
  const base = `/v1/records/${recordId}/versions/${version}/content/uploads`;

  let failures = 0;
  // The failure budget starts again only past the furthest offset ever acknowledged, so a
  // server cannot keep the device sending by moving the offset back and forth.
  let furthest = 0;
  const failed = async (error: unknown): Promise<void> => {
    if (!(error instanceof Unavailable || error instanceof ServerError || slugOf(error) === MISMATCH)) throw error;
    failures += 1;
    if (failures >= attempts) {
      throw new Unavailable(`the upload stopped after ${failures} failed attempts; the server keeps what it ` +
        "acknowledged for a while, but this upload must be started again", { status: (error as EcrinError).status });
    }
    // A slow network may not carry a whole piece before the timeout: smaller pieces still move.
    if (slugOf(error) !== MISMATCH) piece = Math.max(ROW_BYTES, Math.floor(piece / 2 / ROW_BYTES) * ROW_BYTES);
    const retryAfter = error instanceof Unavailable ? error.retryAfter : undefined;
    await new Promise((resolve) => setTimeout(resolve, backoff(failures, retryAfter)));
  };

  let url: string | undefined;
  while (url === undefined) {
    try {
      const opened = await t.json<{ upload_id?: unknown }>("POST", base, {
        ok: [201], headers: { "upload-length": String(total) },
      });
      if (typeof opened.upload_id !== "string") throw new ServerError("the server sent a response that does not follow the API");
      url = `${base}/${encodeURIComponent(opened.upload_id)}`;
    } catch (error) {
      await failed(error);
    }
  }
  let state: State = { offset: 0, complete: false };
  progress(0, total);
  const session = url;

  /** Where the server stands; `undefined` after a failure (counted, paused). */
  const ask = async (): Promise<State | undefined> => {
    try {
      return checked(stateOf(await t.request("HEAD", session, { ok: [200, 204] }), state), total);
    } catch (error) {
      await failed(error);
      return undefined;
    }
  };

  while (!state.complete) {
    const start = state.offset;
    const end = Math.min(start + piece, total);
    const last = end === total;
    const sending = performance.now();
    try {
      const response = await t.request("PATCH", session, {
        ok: [204], body: () => blob.slice(start, end),
        headers: {
          "content-type": "application/octet-stream", "upload-offset": String(start),
          "upload-complete": last ? "?1" : "?0",
        },
      });
      state = checked(stateOf(response, { offset: end, complete: last }), total, [start, end]);
      if (state.offset > furthest) {
        furthest = state.offset;
        failures = 0;
      }
      if (performance.now() - sending < quickMs) piece = Math.max(piece, Math.min(maxPiece, piece * 2));
      progress(state.offset, total);
      continue;
    } catch (error) {
      // Where the server stands decides what comes next: another offset (a piece stored
      // though its answer was lost, or a row cut off), or complete (the last answer lost).
      if (slugOf(error) === COMMITTED) {
        const now = await ask();
        if (now?.complete) break;
        if (now !== undefined) throw error; // committed by another upload than this one
        continue;
      }
      await failed(error);
    }
    const now = await ask();
    if (now === undefined) continue;
    if (now.offset > furthest) {
      furthest = now.offset; // progress made: the budget starts again
      failures = 0;
    }
    state = now;
    progress(state.offset, total);
  }
  progress(total, total);
}

const MISMATCH = "mismatching-upload-offset";
const COMMITTED = "version-committed";

function slugOf(error: unknown): string | undefined {
  return error instanceof Conflict ? (error as EcrinError).slug : undefined;
}
