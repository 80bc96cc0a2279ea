/** The SDK for Node: everything in `index.ts`, plus a profile folder and file helpers. */

export * from "./index.ts";
export { NodeFileStore } from "./node-store.ts";
export { downloadToFile, nodeFileSpool } from "./node-files.ts";
