/** Sources of byte pieces: sync iterables, async iterables and web ReadableStreams. */

export type ByteSource =
  | Iterable<Uint8Array>
  | AsyncIterable<Uint8Array>
  | ReadableStream<Uint8Array>;

/** Iterate any {@link ByteSource} asynchronously (a ReadableStream through its reader). */
export async function* iterate(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (typeof (source as ReadableStream<Uint8Array>).getReader === "function") {
    const reader = (source as ReadableStream<Uint8Array>).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  if (Symbol.asyncIterator in (source as object)) {
    yield* source as AsyncIterable<Uint8Array>;
    return;
  }
  yield* source as Iterable<Uint8Array>;
}

/** A TransformStream driven by a push-style processor (`update` per piece, `finish` once). */
export function pushTransform(update: (piece: Uint8Array) => Uint8Array[],
  finish: () => Uint8Array[]): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(piece, controller) {
      for (const out of update(piece)) controller.enqueue(out);
    },
    flush(controller) {
      for (const out of finish()) controller.enqueue(out);
    },
  });
}
