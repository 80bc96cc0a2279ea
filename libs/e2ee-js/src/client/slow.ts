/**
 * The slow work of the SDK — Argon2id, for passphrases and invitation codes — behind one
 * small interface, so that it runs off the main thread (the crypto core's worker proxy: a
 * Web Worker in browsers, a worker thread in Node) and tests can substitute it. Only the
 * Argon2id output crosses it; the fast steps around it run here with the core's functions.
 */

import {
  accountKeysFromMaster, argon2id, draftInvitation, openInvitation, passphraseBytes, payloadKey, redeemable,
  sealInvitation, DecryptionError, OffThread, type OffThreadOptions, type AccountKeys, type CreatedInvitation, type IdentityKeys, type InvitationCode,
  type InvitationPayload, type KdfParams, type PublicIdentity, type RedeemedInvitation, type ScopeKey,
} from "./core.ts";

export interface SlowCrypto {
  /** Argon2id(password, salt, params), 32 bytes. */
  argon2id(password: Uint8Array, salt: Uint8Array, params: KdfParams): Promise<Uint8Array>;
  /** The worker that encrypts and decrypts record content, when there is one. */
  worker?(): Promise<OffThread>;
}

/** Inline (blocking) Argon2id: for tests and command-line scripts only. */
export const inlineSlowCrypto: SlowCrypto = {
  argon2id: async (password, salt, params) => argon2id(password, salt, params, 32),
};

/**
 * Argon2id, and record content, in the crypto core's worker (`OffThread`), started on first use: Node's
 * worker_threads by default; in a browser, give the bundled worker's URL (`workerUrl`).
 * An `OffThread` already started is itself a `SlowCrypto` and may be passed as is.
 */
export function offThreadSlowCrypto(options?: OffThreadOptions): SlowCrypto {
  let started: Promise<OffThread> | undefined;
  const worker = (): Promise<OffThread> => (started ??= OffThread.start(options));
  return {
    worker,
    // OffThread keeps its Node worker referenced while a call is pending: a process does
    // not exit in the middle of a derivation, and an idle worker never holds it open.
    async argon2id(password, salt, params) {
      return (await worker()).argon2id(password, salt, params);
    },
  };
}

/** The default: off the main thread (in a browser this needs `workerUrl`: pass `slow`). */
export function defaultSlowCrypto(): SlowCrypto {
  return offThreadSlowCrypto();
}

export async function deriveAccountKeys(slow: SlowCrypto, passphrase: string, salt: Uint8Array, params: KdfParams
): Promise<AccountKeys> {
  const master = await slow.argon2id(passphraseBytes(passphrase), salt, params);
  try {
    return accountKeysFromMaster(master);
  } finally {
    master.fill(0);
  }
}

export async function createInvitation(slow: SlowCrypto, scopeKeys: readonly ScopeKey[], inviter: IdentityKeys,
  params: KdfParams): Promise<CreatedInvitation> {
  const draft = draftInvitation(scopeKeys, params);
  const key = await slow.argon2id(draft.code.toBytes(), draft.salt, draft.params);
  try {
    return sealInvitation(scopeKeys, inviter, draft, key);
  } finally {
    key.fill(0);
  }
}

export async function redeemInvitation(slow: SlowCrypto, code: InvitationCode, payload: InvitationPayload,
  redeemer: PublicIdentity): Promise<RedeemedInvitation> {
  if (!redeemable(code, payload)) throw new DecryptionError();
  const key = await slow.argon2id(code.toBytes(), payload.salt, payload.params).catch(() => {
    throw new DecryptionError();
  });
  try {
    return openInvitation(code, payload, redeemer, key);
  } finally {
    key.fill(0);
  }
}

export { payloadKey };
