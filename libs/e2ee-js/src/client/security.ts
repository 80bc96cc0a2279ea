/**
 * The account's own security settings (mirrors the session, step-up, second-factor and
 * passphrase parts of `ecrin_client.client`): live sessions and ending them, the passphrase
 * change, and whether a second factor is enrolled.
 *
 * Ending another session, like changing the passphrase, takes a **step-up**: a fresh
 * challenge for that one action, checked here and signed with the login key (so the
 * passphrase, through Argon2id off the main thread), and the second factor when the
 * account has one. The gateway has no route to remove or reset TOTP: enrolment is
 * `EcrinClient.enableTotp`/`confirmTotp`, its status is `secondFactor()`.
 */

import { KdfParams, newSalt, wrapIdentity } from "./core.ts";
import type { SessionInfo } from "./api-types.ts";
import type { EcrinClient } from "./client.ts";
import { b64e, canonicalUuid } from "./encoding.ts";
import {
  AuthError, Conflict, EcrinError, InvalidCredentials, InvalidInput, SecondFactorRequired, ServerError,
} from "./errors.ts";
import { defaultParams } from "./kdf-policy.ts";
import { deriveAccountKeys } from "./slow.ts";

/** The second factor of a step-up: a TOTP code or one of the one-time recovery codes. */
export interface SecondFactor {
  totpCode?: string;
  recoveryCode?: string;
}

/** One live session of the account, as the gateway lists it. */
export interface SessionView {
  sessionId: string;
  deviceName: string | null;
  kind: string;
  createdAt: string;
  lastUsedAt: string;
  /** The session this client is signed in with. */
  current: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- server JSON, every field checked where it is read
type Json = Record<string, any>;

function sessionView(raw: Json): SessionView {
  if (typeof raw?.id !== "string" || typeof raw.kind !== "string" || typeof raw.created_at !== "string"
    || typeof raw.last_used_at !== "string" || typeof raw.current !== "boolean"
    || (raw.device_name !== null && raw.device_name !== undefined && typeof raw.device_name !== "string")) {
    throw new ServerError("the server sent a malformed session list");
  }
  return {
    sessionId: canonicalUuid(raw.id, "session id"), deviceName: raw.device_name ?? null, kind: raw.kind,
    createdAt: raw.created_at, lastUsedAt: raw.last_used_at, current: raw.current,
  };
}

/** The account's live sessions (`GET /v1/auth/sessions`). */
export async function sessions(client: EcrinClient): Promise<SessionView[]> {
  const body = await client.transport.json<SessionInfo>("GET", "/v1/auth/sessions");
  if (!Array.isArray(body)) throw new ServerError("the server sent a malformed session list");
  return body.map((raw) => sessionView(raw as Json));
}

/** Whether the account has a second factor enrolled (`GET /v1/auth/me`). */
export async function secondFactor(client: EcrinClient): Promise<{ enabled: boolean; verifiedThisSession: boolean }> {
  const me = await client.whoami();
  if (typeof me?.account?.second_factor_enabled !== "boolean") {
    throw new ServerError("the server sent a response that does not follow the API");
  }
  return { enabled: me.account.second_factor_enabled, verifiedThisSession: Boolean(me.second_factor_verified) };
}

function withFactor(body: Json, factor: SecondFactor): Json {
  if (factor.totpCode) body.totp_code = factor.totpCode.trim();
  if (factor.recoveryCode) body.recovery_code = factor.recoveryCode.trim();
  return body;
}

/** A fresh proof for one sensitive action: a challenge for `action` signed with the login
 * key, and the second factor if given. */
export async function stepUp(client: EcrinClient, action: string, passphrase: string, factor: SecondFactor = {}
): Promise<Json> {
  const { email } = await client.requireAccount();
  const challenge = await client.issueChallenge(email, action);
  const keys = await deriveAccountKeys(client.slow, passphrase, challenge.salt, challenge.params);
  return withFactor({
    challenge_id: challenge.challengeId, signature: b64e(keys.loginSigningKey.sign(challenge.data)),
  }, factor);
}

/**
 * End a session of this account. This device's own session ends with its token (and the
 * client is signed out); another one takes a step-up (`passphrase`, and the second factor
 * when enrolled).
 */
export async function revokeSession(client: EcrinClient, sessionId: string,
  options: { passphrase?: string } & SecondFactor = {}): Promise<void> {
  const id = canonicalUuid(sessionId, "session id");
  const tokens = client.transport.tokens;
  if (tokens !== undefined && canonicalUuid(tokens.session_id, "session id") === id) {
    await client.transport.request("DELETE", `/v1/auth/sessions/${id}`, { ok: [200, 204] });
    await client.transport.setTokens(undefined);
    return;
  }
  if (options.passphrase === undefined) throw new InvalidInput("revoking another session needs the passphrase (step-up)");
  const proof = await stepUp(client, "sessions", options.passphrase, options);
  await client.transport.request("POST", `/v1/auth/sessions/${id}/revoke`, { json: proof, ok: [200, 204] });
}

/**
 * Change the passphrase, in the contract's four steps, ordered so that a crash keeps the
 * old one working: 1. store a wrap of the identity under the new KEK (new salt); 2. sign a
 * fresh `passphrase` challenge with the current login key; 3. switch the account (the
 * gateway ends the other sessions); 4. delete the old wrap. The identity never leaves
 * this device unwrapped; the passphrases never leave it at all.
 */
export async function changePassphrase(client: EcrinClient, oldPassphrase: string, newPassphrase: string,
  factor: SecondFactor = {}): Promise<void> {
  const { accountId, email } = await client.requireAccount();
  const current = await client.issueChallenge(email, "passphrase");
  const oldKeys = await deriveAccountKeys(client.slow, oldPassphrase, current.salt, current.params);
  const identity = await client.openPassphraseWrap(accountId, current.salt, oldKeys.kek,
    new InvalidCredentials("the current passphrase is wrong"));
  const params: KdfParams = defaultParams(client.kdfProfile);
  const salt = newSalt();
  const newKeys = await deriveAccountKeys(client.slow, newPassphrase, salt, params);
  const newWrapPath = `/v1/keys/me/wraps/passphrase/${b64e(salt)}`;
  // 1
  await client.transport.request("PUT", newWrapPath, { json: wrapIdentity(identity, newKeys.kek).toJSON(), ok: [200, 201, 204] });
  // 2
  const challenge = await client.issueChallenge(email, "passphrase");
  if (b64e(challenge.salt) !== b64e(current.salt)) throw new Conflict("the passphrase was changed meanwhile on another device");
  const body = withFactor({
    challenge_id: challenge.challengeId, signature: b64e(oldKeys.loginSigningKey.sign(challenge.data)),
    new_login_public_key: b64e(newKeys.loginPublicKey), new_kdf: { salt: b64e(salt), params: params.toJSON() },
  }, factor);
  // 3
  try {
    await client.transport.request("POST", "/v1/auth/passphrase", { json: body, ok: [200, 204] });
  } catch (error) {
    if (error instanceof AuthError || error instanceof SecondFactorRequired || error instanceof InvalidInput
      || error instanceof Conflict) {
      // Refused for sure: the new wrap is an orphan, remove it (best effort).
      await client.transport.request("DELETE", newWrapPath, { ok: [200, 204, 404] }).catch((e: unknown) => {
        if (!(e instanceof EcrinError)) throw e;
      });
    }
    throw error;
  }
  const settings = await client.profile.settings();
  await client.profile.updateSettings({
    kdf_salt: b64e(salt), kdf_params: params.toJSON(),
    stale_wrap_salts: [...(settings.stale_wrap_salts ?? []), b64e(current.salt)],
  });
  // 4
  await client.deleteStaleWraps();
}

