/**
 * Where the unlocked session lives: in this tab's memory, nowhere else.
 *
 * The SDK's unlocked client holds the identity private keys and scope keys. It is kept here
 * only, never in localStorage, IndexedDB or the URL, and dropped (and asked to wipe what it
 * can) after `idleMs` without user activity and on logout. A reload also forgets it: the
 * user unlocks again with the passphrase. Clocks are injected so tests need no waiting.
 */

export interface Wipeable {
  /** Best effort: zero key bytes the SDK holds (JavaScript cannot promise more). */
  wipe?: () => void;
}

export interface Timers {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export const IDLE_LOCK_MS = 15 * 60 * 1000;

/**
 * The lock delay: 15 minutes, or shorter when this browser asks for it (`setting`, in
 * seconds). It can only shorten the delay (5 s to 15 min), so whoever can write
 * localStorage cannot keep keys in memory longer than the default.
 */
export function idleLockMs(setting: string | null): number {
  const seconds = Number(setting);
  if (setting === null || setting.trim() === "" || !Number.isFinite(seconds)) return IDLE_LOCK_MS;
  return Math.min(Math.max(seconds, 5) * 1000, IDLE_LOCK_MS);
}

export type LockReason = "idle" | "logout" | "manual";

export class KeyStore<T extends Wipeable> {
  readonly idleMs: number;
  #value: T | null = null;
  #timer: unknown = null;
  #timers: Timers;
  #listeners: ((reason: LockReason) => void)[] = [];

  constructor(idleMs: number, timers: Timers = realTimers) {
    if (!(idleMs > 0)) throw new RangeError("idleMs must be positive");
    this.idleMs = idleMs;
    this.#timers = timers;
  }

  get unlocked(): boolean {
    return this.#value !== null;
  }

  /** The unlocked value; throws when locked, so a page cannot use stale keys by mistake. */
  get(): T {
    if (this.#value === null) throw new Error("locked");
    return this.#value;
  }

  unlock(value: T): void {
    if (this.#value !== null && this.#value !== value) this.#value.wipe?.();
    this.#value = value;
    this.touch();
  }

  /** User activity: restarts the inactivity countdown while unlocked. */
  touch(): void {
    if (this.#value === null) return;
    if (this.#timer !== null) this.#timers.clear(this.#timer);
    this.#timer = this.#timers.set(() => this.lock("idle"), this.idleMs);
  }

  lock(reason: LockReason = "manual"): void {
    if (this.#timer !== null) this.#timers.clear(this.#timer);
    this.#timer = null;
    const value = this.#value;
    this.#value = null;
    if (value === null) return;
    value.wipe?.();
    for (const listener of this.#listeners) listener(reason);
  }

  onLock(listener: (reason: LockReason) => void): void {
    this.#listeners.push(listener);
  }
}
