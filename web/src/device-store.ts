/**
 * The SDK's client store for this browser: what must outlive a reload, sealed.
 *
 * Why: the trust rule and rollback protection rest on what a device remembers — the
 * fingerprints verified in person (pins), the invitation bindings, the files owned and the
 * grants revoked, the highest version seen of each record and key, the audit heads. Kept in
 * memory only, a reload forgot them: rollback checks restarted from zero and a revoked
 * invitee could be bound again (review F4).
 *
 * How: those documents are kept in memory and written through to IndexedDB, each sealed
 * with the crypto core's `localSeal` (XChaCha20-Poly1305 under a `crypto_kdf` subkey of the
 * account's identity seed, purpose `device-state`), so the browser's storage holds no
 * plaintext and a tampered or swapped document fails to open. The sealing key exists only
 * while the account is unlocked: before `attach` (login or unlock) and after `detach` (lock,
 * logout) writes stay in memory. Tokens and the profile settings are never persisted: a
 * reload still forgets the login, by design.
 *
 * Limits: an attacker who can write this browser's storage can put back an older sealed
 * document of the same account (a rollback of the device state itself); sealing stops
 * forging and reading, not replaying.
 */

import { localOpen, localSeal, type IdentityKeys } from "@ecrin/e2ee";
import { MemoryStore, type ClientStore } from "@ecrin/e2ee/client";

const PURPOSE = "device-state";
const DB_NAME = "ecrin-device";
const DB_STORE = "sealed";

/** The documents worth keeping (state.ts, trust.ts); never tokens.json nor profile.json. */
export const PERSISTED = new Set([
  "pins.json", "bindings.json", "files.json", "versions.json", "audit-heads.json", "service-keys.json",
]);

/** Where sealed documents go: IndexedDB in the app, a Map in unit tests. */
export interface SealedBackend {
  get(key: string): Promise<string | undefined>;
  put(key: string, sealed: string): Promise<void>;
  delete(key: string): Promise<void>;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

/** One object store of sealed strings in IndexedDB, opened on first use. */
export class IndexedDbBackend implements SealedBackend {
  #db: Promise<IDBDatabase> | null = null;

  #open(): Promise<IDBDatabase> {
    this.#db ??= new Promise((resolve, reject) => {
      // Version 2: a database of that name made without the store (opened with no version
      // by a tool or a test after the device was forgotten) is upgraded, not unusable.
      const req = indexedDB.open(DB_NAME, 2);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(DB_STORE)) req.result.createObjectStore(DB_STORE);
      };
      req.onsuccess = () => {
        // Forgetting the device (or Clear-Site-Data) deletes the database: let it.
        req.result.onversionchange = () => req.result.close();
        resolve(req.result);
      };
      req.onerror = () => reject(req.error ?? new Error("IndexedDB unavailable"));
    });
    return this.#db;
  }

  async #store(mode: IDBTransactionMode): Promise<IDBObjectStore> {
    return (await this.#open()).transaction(DB_STORE, mode).objectStore(DB_STORE);
  }

  async get(key: string): Promise<string | undefined> {
    const value = await request((await this.#store("readonly")).get(key));
    return typeof value === "string" ? value : undefined;
  }

  async put(key: string, sealed: string): Promise<void> {
    await request((await this.#store("readwrite")).put(sealed, key));
  }

  async delete(key: string): Promise<void> {
    await request((await this.#store("readwrite")).delete(key));
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * What this device knew before (`saved`) and what the login just wrote (`current`): the
 * saved document wins, so a pin or a binding cannot be replaced by logging in again, except
 * high-water marks, which only rise.
 */
export function merge(name: string, saved: unknown, current: unknown): unknown {
  if (current === undefined || !isRecord(saved) || !isRecord(current)) return saved;
  if (name !== "versions.json") return { ...current, ...saved };
  const out: Record<string, unknown> = { ...saved };
  for (const [key, version] of Object.entries(current)) {
    const before = out[key];
    if (typeof version === "number" && (typeof before !== "number" || version > before)) out[key] = version;
  }
  return out;
}

export class SealedDeviceStore implements ClientStore {
  readonly #memory = new MemoryStore();
  readonly #backend: SealedBackend;
  #identity: IdentityKeys | null = null;

  constructor(backend: SealedBackend = new IndexedDbBackend()) {
    this.#backend = backend;
  }

  #key(identity: IdentityKeys, name: string): string {
    return `${identity.accountId}/${name}`;
  }

  async #persist(identity: IdentityKeys, name: string, value: unknown): Promise<void> {
    // The name is sealed with the value: a document moved under another name fails to open.
    const plaintext = new TextEncoder().encode(JSON.stringify({ name, value }));
    await this.#backend.put(this.#key(identity, name), localSeal(identity, PURPOSE, plaintext));
  }

  /**
   * The account is unlocked: load what this device saved for it (merged into memory), then
   * seal every later write. A document that does not open (tampered, another account's)
   * throws: the app must not go on with a device state it cannot trust.
   */
  async attach(identity: IdentityKeys): Promise<void> {
    this.#identity = identity;
    for (const name of PERSISTED) {
      const sealed = await this.#backend.get(this.#key(identity, name));
      const current = await this.#memory.read(name);
      let value = current;
      if (sealed !== undefined) {
        const opened: unknown = JSON.parse(new TextDecoder().decode(localOpen(identity, PURPOSE, sealed)));
        if (!isRecord(opened) || opened.name !== name) throw new Error(`sealed ${name} is another document`);
        value = merge(name, opened.value, current);
        await this.#memory.write(name, value);
      }
      if (value !== undefined) await this.#persist(identity, name, value);
    }
  }

  /** Locked or logged out: the sealing key is dropped; memory is forgotten on logout. */
  detach(): void {
    this.#identity = null;
  }

  async read(name: string): Promise<unknown> {
    return this.#memory.read(name);
  }

  async write(name: string, value: unknown): Promise<void> {
    await this.#memory.write(name, value);
    if (this.#identity !== null && PERSISTED.has(name)) await this.#persist(this.#identity, name, value);
  }

  async remove(name: string): Promise<void> {
    await this.#memory.remove(name);
    if (this.#identity !== null && PERSISTED.has(name)) await this.#backend.delete(this.#key(this.#identity, name));
  }
}

/**
 * Forgets this device's sealed state (every account's): "Se déconnecter et oublier cet
 * appareil". The gateway's `Clear-Site-Data: "storage"` does the same; this also works when
 * the session had already ended and the logout brought no such header.
 */
export async function eraseDeviceState(): Promise<void> {
  const erase = (): Promise<void> => new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(DB_NAME);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error ?? new Error("IndexedDB deletion failed"));
  });
  try {
    await erase();
  } catch {
    // The browser may be clearing the origin's storage at that very moment (the logout's
    // Clear-Site-Data), which aborts this request: once it is done, deleting is a no-op.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await erase();
  }
}
