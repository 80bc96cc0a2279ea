import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyStore, type Timers } from "../src/keystore.ts";

/** A clock the test advances by hand. */
function fakeTimers(): Timers & { advance(ms: number): void } {
  let now = 0;
  let next = 0;
  const pending = new Map<number, { at: number; callback: () => void }>();
  return {
    set(callback, ms) { next += 1; pending.set(next, { at: now + ms, callback }); return next; },
    clear(handle) { pending.delete(handle as number); },
    advance(ms) {
      now += ms;
      for (const [id, timer] of [...pending]) {
        if (timer.at <= now) { pending.delete(id); timer.callback(); }
      }
    },
  };
}

function secret() {
  const state = { wiped: false };
  return { state, value: { wipe: () => { state.wiped = true; } } };
}

describe("in-memory key store", () => {
  it("locks and wipes after inactivity, and says why", () => {
    const timers = fakeTimers();
    const store = new KeyStore(1000, timers);
    const reasons: string[] = [];
    store.onLock((reason) => reasons.push(reason));
    const { state, value } = secret();
    store.unlock(value);
    timers.advance(999);
    assert.equal(store.unlocked, true);
    timers.advance(1);
    assert.equal(store.unlocked, false);
    assert.equal(state.wiped, true);
    assert.deepEqual(reasons, ["idle"]);
    assert.throws(() => store.get(), /locked/);
  });
  it("restarts the countdown on activity", () => {
    const timers = fakeTimers();
    const store = new KeyStore(1000, timers);
    store.unlock(secret().value);
    timers.advance(900);
    store.touch();
    timers.advance(900);
    assert.equal(store.unlocked, true);
    timers.advance(100);
    assert.equal(store.unlocked, false);
  });
  it("locks on logout and wipes a replaced session", () => {
    const store = new KeyStore(1000, fakeTimers());
    const first = secret();
    const second = secret();
    store.unlock(first.value);
    store.unlock(second.value);
    assert.equal(first.state.wiped, true);
    assert.equal(store.get(), second.value);
    store.lock("logout");
    assert.equal(second.state.wiped, true);
    assert.equal(store.unlocked, false);
  });
  it("refuses a non-positive idle time", () => {
    assert.throws(() => new KeyStore(0), RangeError);
  });
});

describe("idleLockMs", () => {
  it("only shortens the 15-minute lock, never below 5 s", async () => {
    const { IDLE_LOCK_MS, idleLockMs } = await import("../src/keystore.ts");
    assert.equal(idleLockMs(null), IDLE_LOCK_MS);
    assert.equal(idleLockMs("abc"), IDLE_LOCK_MS);
    assert.equal(idleLockMs(""), IDLE_LOCK_MS);
    assert.equal(idleLockMs("10"), 10000);
    assert.equal(idleLockMs("1"), 5000);
    assert.equal(idleLockMs("86400"), IDLE_LOCK_MS);
  });
});
