/**
 * Client state: what one account on one device remembers, behind a small storage interface.
 *
 * The same documents as the Python profile folder (`ecrin_client.profile`): `profile.json`
 * (server URL, account id, email, role, the account's public KDF salt and parameters),
 * `tokens.json`, `pins.json` (fingerprints verified in person), `bindings.json` and
 * `files.json` (the trust rule's records), `versions.json` (the highest version seen of each
 * record and key: rollback protection), `audit-heads.json` and `service-keys.json`.
 *
 * Nothing stored here is a passphrase, a recovery key or an unwrapped key: the SDK never
 * hands one to a store. Three stores: `MemoryStore` (tests, and the browser app that must
 * not persist anything), `NodeFileStore` (`node-store.ts`: a 0700 folder of 0600 files,
 * compatible with the Python CLI's profile), or any other that implements `ClientStore`.
 */

import { compact, grouped } from "./encoding.ts";
import { InvalidInput, IdentityMismatch } from "./errors.ts";

/** A JSON document store: the only thing the SDK needs to persist. */
export interface ClientStore {
  read(name: string): Promise<unknown>;
  write(name: string, value: unknown): Promise<void>;
  remove(name: string): Promise<void>;
}

/** Kept in memory only: forgotten when the page or process ends. */
export class MemoryStore implements ClientStore {
  private readonly docs = new Map<string, string>();

  async read(name: string): Promise<unknown> {
    const text = this.docs.get(name);
    return text === undefined ? undefined : JSON.parse(text);
  }

  async write(name: string, value: unknown): Promise<void> {
    this.docs.set(name, JSON.stringify(value)); // a copy: callers may mutate theirs
  }

  async remove(name: string): Promise<void> {
    this.docs.delete(name);
  }
}

export interface ProfileSettings {
  server_url?: string | null;
  account_id?: string | null;
  email?: string | null;
  role?: string | null;
  kdf_salt?: string | null;
  kdf_params?: Record<string, unknown> | null;
  /** Old passphrase wraps still to delete from the kms (a crash after a passphrase change). */
  stale_wrap_salts?: string[];
}

export interface StoredTokens {
  access_token: string;
  refresh_token: string;
  session_id: string;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** The typed view of a store that the SDK uses. */
export class Profile {
  static readonly SETTINGS = "profile.json";
  static readonly TOKENS = "tokens.json";
  static readonly PINS = "pins.json";
  static readonly VERSIONS = "versions.json";

  readonly store: ClientStore;

  constructor(store: ClientStore = new MemoryStore()) {
    this.store = store;
  }

  async read(name: string): Promise<unknown> {
    return this.store.read(name);
  }

  async write(name: string, value: unknown): Promise<void> {
    await this.store.write(name, value);
  }

  // settings

  async settings(): Promise<ProfileSettings> {
    const raw = await this.store.read(Profile.SETTINGS);
    if (raw === undefined || raw === null) return {};
    if (!isRecord(raw)) throw new InvalidInput(`${Profile.SETTINGS} is malformed`);
    return raw as ProfileSettings;
  }

  async saveSettings(settings: ProfileSettings): Promise<void> {
    await this.store.write(Profile.SETTINGS, { stale_wrap_salts: [], ...settings });
  }

  async updateSettings(changes: ProfileSettings): Promise<ProfileSettings> {
    const settings = { ...(await this.settings()), ...changes };
    await this.saveSettings(settings);
    return settings;
  }

  // tokens

  async tokens(): Promise<StoredTokens | undefined> {
    const raw = await this.store.read(Profile.TOKENS);
    if (!isRecord(raw)) return undefined;
    const { access_token, refresh_token, session_id } = raw;
    if (typeof access_token !== "string" || typeof refresh_token !== "string" || typeof session_id !== "string") {
      return undefined;
    }
    return { access_token, refresh_token, session_id };
  }

  async saveTokens(tokens: StoredTokens | undefined): Promise<void> {
    if (tokens === undefined) await this.store.remove(Profile.TOKENS);
    else await this.store.write(Profile.TOKENS, tokens);
  }

  // pins: fingerprints the user verified in person

  async pins(): Promise<Record<string, string>> {
    const raw = await this.store.read(Profile.PINS);
    const out: Record<string, string> = {};
    if (isRecord(raw)) for (const [k, v] of Object.entries(raw)) out[k] = String(v);
    return out;
  }

  async pinned(accountId: string): Promise<string | undefined> {
    return (await this.pins())[accountId];
  }

  /** Remember a verified fingerprint; pinning another key over it is refused. */
  async pin(accountId: string, fingerprint: string): Promise<void> {
    const digits = compact(fingerprint);
    if (!/^[0-9a-f]{64}$/.test(digits)) throw new InvalidInput("a fingerprint is 64 hex digits");
    const pins = await this.pins();
    const current = pins[accountId];
    if (current !== undefined && compact(current) !== digits) {
      throw new IdentityMismatch(`account ${accountId} is already pinned to another key`);
    }
    pins[accountId] = grouped(digits);
    await this.store.write(Profile.PINS, pins);
  }

  async unpin(accountId: string): Promise<void> {
    const pins = await this.pins();
    if (accountId in pins) {
      delete pins[accountId];
      await this.store.write(Profile.PINS, pins);
    }
  }

  // highest versions seen (rollback detection)

  async seenVersions(): Promise<Record<string, number>> {
    const raw = await this.store.read(Profile.VERSIONS);
    const out: Record<string, number> = {};
    if (isRecord(raw)) for (const [k, v] of Object.entries(raw)) if (Number.isInteger(v)) out[k] = v as number;
    return out;
  }

  async seenVersion(key: string): Promise<number> {
    return (await this.seenVersions())[key] ?? 0;
  }

  /** Raise the high-water marks (never lower them): one write for many records. */
  async rememberVersions(versions: Record<string, number>): Promise<void> {
    const seen = await this.seenVersions();
    let changed = false;
    for (const [key, version] of Object.entries(versions)) {
      if (version > (seen[key] ?? 0)) {
        seen[key] = version;
        changed = true;
      }
    }
    if (changed) await this.store.write(Profile.VERSIONS, seen);
  }
}
