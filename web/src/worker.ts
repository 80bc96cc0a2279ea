/**
 * The crypto Web Worker: Argon2id and record content encryption, off the main thread.
 *
 * It is the SDK's own worker (libs/e2ee-js/src/worker.ts, driven by its offthread.ts
 * proxy), bundled here under a content-hashed name that sdk.ts hands to the SDK. The SDK's
 * proxy waits for the worker's "ready" message before posting, so nothing is lost while
 * libsodium's WebAssembly loads.
 */
import "@ecrin/e2ee/worker";
