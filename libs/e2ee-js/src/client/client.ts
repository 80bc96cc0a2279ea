/**
 * The async SDK's entry point: one account on one device, over `fetch` (mirrors
 * `ecrin_client.client`): sign-up, login (challenge checked before signing, second factor),
 * unlock, the verified directory and pins.
 *
 * Secrets (the passphrase, the recovery key, the KEK, identity private keys) live only in
 * local variables and in the `IdentityKeys` that `unlock` returns; the profile store
 * receives ids, public values and tokens only. Argon2id runs through `slow`, off the main
 * thread by default (the crypto core's worker proxy).
 */

import {
  createAccountWithKeys, FormatError, IdentityMismatchError, KdfParams, KeyChange, keyChangeLinks, newSalt,
  PublicIdentity, unwrapIdentity, WrappedIdentity, type AccountKeys, type IdentityKeys,
  type KeyEncryptionKey, type RecoveryKey,
} from "./core.ts";
import type { Challenge, DirectoryEntry, Me, SignupBody, TokenPair, UnlockBundle } from "./api-types.ts";
import { checkChallenge } from "./challenge.ts";
import { b64d, b64e, canonicalUuid, compact, fromHex, randomToken } from "./encoding.ts";
import {
  AuthError, EcrinError, IdentityMismatch, IntegrityError, InvalidCredentials, InvalidInput, NotFound,
  NotLoggedIn, ServerError, Unavailable,
} from "./errors.ts";
import { checkServerParams, defaultParams, kdfProfileFromEnv, type KdfProfile } from "./kdf-policy.ts";
import { defaultSlowCrypto, deriveAccountKeys, type SlowCrypto } from "./slow.ts";
import * as security from "./security.ts";
import type { SecondFactor, SessionView } from "./security.ts";
import { MemoryStore, Profile, type ClientStore } from "./state.ts";
import { GatewayTransport, tokenPair, unlockBundle, type Fetch } from "./transport.ts";

export const ROLES = ["practitioner", "staff", "patient", "representative"] as const;
export type Role = (typeof ROLES)[number];

export interface ClientOptions {
  /** Where the client's state lives (default: memory only). */
  store?: ClientStore;
  /** `fetch` to use (default: the platform's). */
  fetch?: Fetch;
  /** Argon2id and other slow work (default: off the main thread). */
  slow?: SlowCrypto;
  /** Argon2id parameters for new keys and the floor accepted (default: ECRIN_KDF_PROFILE or moderate). */
  kdfProfile?: KdfProfile;
  timeoutMs?: number;
}

export interface SignupResult {
  accountId: string;
  email: string;
  role: string;
  /** Shown once to the user: the only way back in without the passphrase. */
  recoveryKey: string;
}

export interface LoginResult {
  account: TokenPair["account"];
  sessionId: string;
  secondFactorVerified: boolean;
  fingerprint: string;
  /** With `{ unlock: true }`: the identity keys the login just opened (memory only), so
   * that an app need not run Argon2id a second time in `unlock`. */
  identity?: IdentityKeys;
}

/** Options of `login`. */
export interface LoginOptions {
  totpCode?: string;
  recoveryCode?: string;
  deviceName?: string;
  /** Also return the identity keys (`LoginResult.identity`), as `unlock` would. */
  unlock?: boolean;
}

export interface Verification {
  accountId: string;
  fingerprint: string;
  safetyNumber: string;
  pinned: boolean;
}

export interface IssuedChallenge {
  challengeId: string;
  data: Uint8Array;
  salt: Uint8Array;
  params: KdfParams;
}

export class EcrinClient {
  readonly serverUrl: string;
  readonly profile: Profile;
  readonly transport: GatewayTransport;
  readonly slow: SlowCrypto;
  readonly kdfProfile: KdfProfile;

  private constructor(serverUrl: string, profile: Profile, transport: GatewayTransport, options: ClientOptions) {
    this.serverUrl = serverUrl;
    this.profile = profile;
    this.transport = transport;
    this.slow = options.slow ?? defaultSlowCrypto();
    this.kdfProfile = options.kdfProfile ?? kdfProfileFromEnv();
  }

  /** A client for `serverUrl` (or the one saved in the store when undefined). */
  static async open(serverUrl: string | undefined, options: ClientOptions = {}): Promise<EcrinClient> {
    const profile = new Profile(options.store ?? new MemoryStore());
    const url = serverUrl ?? (await profile.settings()).server_url ?? undefined;
    if (!url) throw new InvalidInput("no server URL given or saved");
    if (!/^https?:\/\//.test(url)) throw new InvalidInput("the server URL must start with https:// (or http://)");
    const transport = new GatewayTransport(url, {
      tokens: await profile.tokens(), onTokens: (tokens) => profile.saveTokens(tokens), fetch: options.fetch,
      timeoutMs: options.timeoutMs,
    });
    return new EcrinClient(url.replace(/\/+$/, ""), profile, transport, options);
  }

  // -- helpers ---------------------------------------------------------------------------

  /** @internal A fresh challenge for `action`, checked before anything signs it (security.ts). */
  async issueChallenge(email: string, action: string): Promise<IssuedChallenge> {
    const body = await this.transport.json<Challenge>("POST", "/v1/auth/challenge", { auth: false, json: { email, action } });
    if (typeof body?.challenge_id !== "string" || typeof body.kdf !== "object") {
      throw new ServerError("the server sent a response that does not follow the API");
    }
    const data = b64d(body.challenge, "challenge");
    checkChallenge(data, this.serverUrl, action, body.challenge_id);
    let params: KdfParams;
    try {
      params = KdfParams.fromJSON(body.kdf.params);
    } catch {
      throw new ServerError("the server sent invalid key-derivation parameters");
    }
    if (action !== "recover") checkServerParams(params, this.kdfProfile);
    return { challengeId: body.challenge_id, data, salt: b64d(body.kdf.salt, "salt"), params };
  }

  /** Retry an idempotent call while the server is unavailable. */
  async retrying<T>(call: () => Promise<T>, attempts = 3): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof Unavailable) || attempt === attempts - 1) throw error;
        const seconds = Math.min(error.retryAfter ?? 0.5 * 2 ** attempt, 5);
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      }
    }
  }

  async requireAccount(): Promise<{ accountId: string; email: string }> {
    const settings = await this.profile.settings();
    if (!settings.account_id || !settings.email || this.transport.tokens === undefined) throw new NotLoggedIn();
    return { accountId: settings.account_id, email: settings.email };
  }

  private async fetchWrap(path: string): Promise<WrappedIdentity> {
    const body = await this.transport.json("GET", path);
    try {
      return WrappedIdentity.fromJSON(body);
    } catch {
      throw new ServerError("the kms sent a malformed key wrap");
    }
  }

  private unwrap(wrapped: WrappedIdentity, key: KeyEncryptionKey | RecoveryKey, purpose: "passphrase" | "recovery",
    accountId: string, onFailure: EcrinError): IdentityKeys {
    if (wrapped.accountId !== accountId || wrapped.purpose !== purpose) {
      throw new IntegrityError("the kms sent a key wrap of another account or purpose");
    }
    try {
      return unwrapIdentity(wrapped, key);
    } catch {
      throw onFailure;
    }
  }

  /** @internal */
  async openPassphraseWrap(accountId: string, salt: Uint8Array, kek: KeyEncryptionKey,
    onFailure: EcrinError): Promise<IdentityKeys> {
    let wrapped: WrappedIdentity;
    try {
      wrapped = await this.fetchWrap(`/v1/keys/me/wraps/passphrase/${b64e(salt)}`);
    } catch (error) {
      if (error instanceof NotFound) throw onFailure;
      throw error;
    }
    return this.unwrap(wrapped, kek, "passphrase", accountId, onFailure);
  }

  /** The passphrase wrap opened, and the account's own directory entry (checked): `given`
   * (the login's answer carried them) or one request; either gets the same checks, and the
   * entry is trusted only once `adoptIdentity` compared it with the keys. */
  private async unlockIdentity(accountId: string, salt: Uint8Array, kek: KeyEncryptionKey,
    onFailure: EcrinError, given?: unknown): Promise<{ identity: IdentityKeys; published: PublicIdentity }> {
    let bundle: UnlockBundle;
    if (given !== undefined && given !== null) {
      bundle = unlockBundle(given);
    } else {
      try {
        bundle = await this.transport.json<UnlockBundle>("GET", `/v1/keys/me/unlock/${b64e(salt)}`);
      } catch (error) {
        if (error instanceof NotFound) throw onFailure;
        throw error;
      }
    }
    let wrapped: WrappedIdentity;
    try {
      wrapped = WrappedIdentity.fromJSON(bundle.wrap);
    } catch {
      throw new ServerError("the kms sent a malformed key wrap");
    }
    const identity = this.unwrap(wrapped, kek, "passphrase", accountId, onFailure);
    return { identity, published: this.checkedEntry(accountId, bundle.directory).identity };
  }

  /** Check the directory publishes the identity this device unwrapped; pin it as `self`.
   * `published` is the entry served with the wrap, if it was (checked like a fetched one). */
  private async adoptIdentity(identity: IdentityKeys, published?: PublicIdentity): Promise<string> {
    published ??= await this.directoryIdentity(identity.accountId);
    const mine = identity.publicIdentity();
    if (!published.equals(mine)) {
      throw new IdentityMismatch("the directory publishes another identity for this account than the one its key wrap holds");
    }
    const pinned = await this.profile.pinned(identity.accountId);
    if (pinned === undefined) await this.profile.pin(identity.accountId, mine.fingerprintHex());
    else if (compact(pinned) !== compact(mine.fingerprintHex())) {
      throw new IdentityMismatch("this account's own key changed since this device pinned it");
    }
    return mine.fingerprintHex();
  }

  /** @internal */
  async deleteStaleWraps(): Promise<void> {
    const settings = await this.profile.settings();
    const left: string[] = [];
    for (const salt of settings.stale_wrap_salts ?? []) {
      if (salt === settings.kdf_salt) continue;
      try {
        await this.transport.request("DELETE", `/v1/keys/me/wraps/passphrase/${salt}`, { ok: [200, 204, 404] });
      } catch (error) {
        if (!(error instanceof EcrinError)) throw error;
        left.push(salt);
      }
    }
    if (left.length !== (settings.stale_wrap_salts ?? []).length) await this.profile.updateSettings({ stale_wrap_salts: left });
  }

  // -- accounts --------------------------------------------------------------------------

  /**
   * Create the account. Returns its id and the recovery key text, shown only once.
   *
   * The gateway accepts (202) every well-formed sign-up so that nobody can learn which emails
   * have accounts: if this email already had one, nothing was created and the first login
   * with this passphrase fails as invalid credentials.
   */
  async signup(email: string, passphrase: string, role: Role, kdfParams?: KdfParams): Promise<SignupResult> {
    if (!ROLES.includes(role)) throw new InvalidInput(`role must be one of ${ROLES.join(", ")}`);
    const params = kdfParams ?? defaultParams(this.kdfProfile);
    const accountId = crypto.randomUUID();
    const salt = newSalt();
    const keys = await deriveAccountKeys(this.slow, passphrase, salt, params);
    const setup = createAccountWithKeys(accountId, salt, params, keys);
    const body: SignupBody = {
      account_id: accountId, email, role,
      login_public_key: b64e(setup.loginPublicKey),
      kdf: { salt: b64e(setup.salt), params: setup.params.toJSON() as SignupBody["kdf"]["params"] },
      recovery_public_key: b64e(setup.recoveryKey.loginPublicKey),
      identity: setup.publicIdentity.toJSON() as unknown as SignupBody["identity"],
      wrapped_keys: {
        passphrase: setup.wrappedByPassphrase.toJSON() as unknown as SignupBody["wrapped_keys"]["passphrase"],
        recovery: setup.wrappedByRecovery.toJSON() as unknown as SignupBody["wrapped_keys"]["recovery"],
      },
    };
    const idempotencyKey = randomToken(); // the same for every retry
    const result = await this.retrying(() => this.transport.json<Record<string, unknown>>("POST", "/v1/auth/signup", {
      auth: false, json: body, headers: { "idempotency-key": idempotencyKey }, ok: [200, 201, 202],
    }));
    if (canonicalUuid(result.account_id) !== accountId) throw new ServerError("the server created an account with another id");
    await this.transport.setTokens(undefined);
    await this.profile.saveSettings({
      ...(await this.profile.settings()), server_url: this.serverUrl, account_id: accountId, email, role,
      kdf_salt: b64e(setup.salt), kdf_params: setup.params.toJSON(), stale_wrap_salts: [],
    });
    await this.profile.pin(accountId, setup.publicIdentity.fingerprintHex());
    return { accountId, email, role, recoveryKey: setup.recoveryKey.toText() };
  }

  /** Challenge (checked), Argon2id, sign, tokens; then check the passphrase wrap opens here. */
  async login(email: string, passphrase: string, options: LoginOptions = {}): Promise<LoginResult> {
    const challenge = await this.issueChallenge(email, "login");
    const keys = await deriveAccountKeys(this.slow, passphrase, challenge.salt, challenge.params);
    return this.finishLogin(challenge, keys, options);
  }

  private async finishLogin(challenge: IssuedChallenge, keys: AccountKeys,
    options: LoginOptions): Promise<LoginResult> {
    const body: Record<string, string | boolean> = {
      challenge_id: challenge.challengeId, signature: b64e(keys.loginSigningKey.sign(challenge.data)),
      unlock: true, // the keys come with the answer: one request fewer
    };
    if (options.totpCode) body.totp_code = options.totpCode.trim();
    if (options.recoveryCode) body.recovery_code = options.recoveryCode.trim();
    if (options.deviceName) body.device_name = options.deviceName;
    let answer: unknown;
    try {
      answer = await this.transport.json("POST", "/v1/auth/login", { auth: false, json: body });
    } catch (error) {
      if (!(error instanceof InvalidInput && "unlock" in error.fields)) throw error;
      // A gateway older than `unlock` refuses the field before it reads the challenge: the
      // same signed body without it, and the keys in a request apart.
      delete body.unlock;
      answer = await this.transport.json("POST", "/v1/auth/login", { auth: false, json: body });
    }
    const pair = tokenPair(answer);
    const accountId = canonicalUuid(pair.account.id);
    const previous = await this.profile.settings();
    if (previous.account_id && previous.account_id !== accountId) await this.profile.updateSettings({ stale_wrap_salts: [] });
    await this.transport.adopt(pair);
    await this.profile.updateSettings({
      server_url: this.serverUrl, account_id: accountId, email: pair.account.email, role: pair.account.role,
      kdf_salt: b64e(challenge.salt), kdf_params: challenge.params.toJSON(),
    });
    let fingerprint: string;
    let identity: IdentityKeys;
    try {
      let published: PublicIdentity;
      ({ identity, published } = await this.unlockIdentity(accountId, challenge.salt, keys.kek, new IntegrityError(
        "the key wrap does not open with the key that just signed in: the kms data was altered"), pair.unlock));
      fingerprint = await this.adoptIdentity(identity, published);
    } catch (error) {
      if (error instanceof IntegrityError) await this.logout().catch(() => undefined);
      throw error;
    }
    await this.deleteStaleWraps();
    const result: LoginResult = {
      account: pair.account, sessionId: pair.session_id, secondFactorVerified: pair.second_factor_verified ?? false, fingerprint,
    };
    if (options.unlock === true) result.identity = identity;
    return result;
  }

  /** The identity private keys, for the flows that decrypt or sign (kept in memory only). */
  async unlock(passphrase: string): Promise<IdentityKeys> {
    const { accountId, email } = await this.requireAccount();
    const settings = await this.profile.settings();
    let salt: Uint8Array;
    let params: KdfParams;
    if (settings.kdf_salt && settings.kdf_params) {
      salt = b64d(settings.kdf_salt, "salt");
      params = KdfParams.fromJSON(settings.kdf_params);
    } else {
      ({ salt, params } = await this.issueChallenge(email, "login"));
    }
    checkServerParams(params, this.kdfProfile);
    const keys = await deriveAccountKeys(this.slow, passphrase, salt, params);
    const { identity, published } = await this.unlockIdentity(accountId, salt, keys.kek, new InvalidCredentials());
    await this.adoptIdentity(identity, published);
    return identity;
  }

  /**
   * Revoke this session at the gateway and forget its tokens. In a browser the gateway's
   * answer clears the HTTP cache and cookies; with `forgetDevice` (a shared computer) also
   * the origin's storage: the sealed device state (pins, bindings, rollback marks) is gone.
   */
  async logout(options: { forgetDevice?: boolean } = {}): Promise<void> {
    if (this.transport.tokens === undefined) return;
    const path = options.forgetDevice ? "/v1/auth/logout?forget_device=true" : "/v1/auth/logout";
    try {
      await this.transport.request("POST", path, { ok: [200, 204] });
    } catch (error) {
      if (!(error instanceof AuthError)) throw error; // already revoked or expired
    }
    await this.transport.setTokens(undefined);
  }

  /** Start TOTP enrolment: the secret and otpauth URI to show (as a QR code) once. */
  async enableTotp(): Promise<{ secret: string; otpauth_uri: string }> {
    return this.transport.json("POST", "/v1/auth/2fa/totp");
  }

  /** Confirm TOTP with a first code; returns the one-time recovery codes to show once. */
  async confirmTotp(code: string): Promise<string[]> {
    const body = await this.transport.json<{ recovery_codes?: unknown }>("POST", "/v1/auth/2fa/totp/confirm", { json: { code: code.trim() } });
    if (!Array.isArray(body.recovery_codes) || body.recovery_codes.length === 0) {
      throw new ServerError("the server sent a response that does not follow the API");
    }
    return body.recovery_codes.map(String);
  }

  async whoami(): Promise<Me> {
    return this.transport.json<Me>("GET", "/v1/auth/me");
  }

  // -- sessions, step-up, passphrase (security.ts) ------------------------------------------

  /** The account's live sessions. */
  async sessions(): Promise<SessionView[]> {
    return security.sessions(this);
  }

  /** End a session: this one with its token; another with a step-up (passphrase, second factor). */
  async revokeSession(sessionId: string, options: { passphrase?: string } & SecondFactor = {}): Promise<void> {
    return security.revokeSession(this, sessionId, options);
  }

  /** Whether a second factor is enrolled (the gateway has no route to remove one). */
  async secondFactor(): Promise<{ enabled: boolean; verifiedThisSession: boolean }> {
    return security.secondFactor(this);
  }

  /** Change the passphrase (step-up with the old one and the second factor when enrolled). */
  async changePassphrase(oldPassphrase: string, newPassphrase: string, factor: SecondFactor = {}): Promise<void> {
    return security.changePassphrase(this, oldPassphrase, newPassphrase, factor);
  }

  // -- directory and verification --------------------------------------------------------

  private async directoryEntry(accountId: string): Promise<{ identity: PublicIdentity; entry: DirectoryEntry }> {
    return this.checkedEntry(accountId, await this.transport.json<DirectoryEntry>("GET", `/v1/directory/${accountId}`));
  }

  private checkedEntry(accountId: string, entry: DirectoryEntry): { identity: PublicIdentity; entry: DirectoryEntry } {
    let identity: PublicIdentity;
    try {
      identity = PublicIdentity.fromJSON(entry.identity);
    } catch (error) {
      if (error instanceof IdentityMismatchError) throw new IdentityMismatch("the directory entry's self-signature does not verify");
      throw new ServerError("the directory sent a malformed identity");
    }
    if (identity.accountId !== accountId) throw new IdentityMismatch("the directory answered with another account's identity");
    if (compact(String(entry.fingerprint)) !== compact(identity.fingerprintHex())) {
      throw new IntegrityError("the directory's fingerprint does not match the identity");
    }
    return { identity, entry };
  }

  /** An account's identity from the directory, verified, without the pin check. */
  async directoryIdentity(accountId: string): Promise<PublicIdentity> {
    return (await this.directoryEntry(canonicalUuid(accountId))).identity;
  }

  /** Whether the key changes the directory serves lead from the pinned fingerprint to
   * `current`, each signed by the key it replaced. */
  private signedChange(pinned: string, entry: DirectoryEntry, current: PublicIdentity): boolean {
    try {
      const history = (entry.key_changes ?? []).map((c) =>
        [PublicIdentity.fromJSON(c.previous_identity), KeyChange.fromJSON(c.statement)] as [PublicIdentity, KeyChange]);
      return keyChangeLinks(fromHex(compact(pinned)), history, current);
    } catch (error) {
      if (error instanceof FormatError || error instanceof IdentityMismatchError || error instanceof InvalidInput) return false;
      throw error;
    }
  }

  /**
   * An account's public identity, verified, and checked against its pin if pinned. A pinned
   * account whose key changed raises `IdentityMismatch`, saying whether the key verified
   * before signed the change (it is refused either way).
   */
  async getDirectory(accountId: string): Promise<PublicIdentity> {
    const id = canonicalUuid(accountId);
    const { identity, entry } = await this.directoryEntry(id);
    const pinned = await this.profile.pinned(id);
    if (pinned !== undefined && compact(pinned) !== compact(identity.fingerprintHex())) {
      const how = this.signedChange(pinned, entry, identity)
        ? `account ${id} replaced its key; the change is signed by the key you verified`
        : "no statement signed by the key you verified vouches for the new one";
      throw new IdentityMismatch(`the public key of account ${id} CHANGED since you verified it: ${how}. ` +
        "Refusing to use it: compare safety numbers again, in person");
    }
    return identity;
  }

  /** Their fingerprint and our safety number, to compare in person before `pin`. */
  async verifyAccount(accountId: string): Promise<Verification> {
    const { accountId: myId } = await this.requireAccount();
    const id = canonicalUuid(accountId);
    const theirs = await this.getDirectory(id);
    const mine = await this.getDirectory(myId);
    return {
      accountId: id, fingerprint: theirs.fingerprintHex(), safetyNumber: mine.safetyNumber(theirs),
      pinned: (await this.profile.pinned(id)) !== undefined,
    };
  }

  /** Remember a fingerprint the user verified in person; later changes are refused loudly. */
  async pin(accountId: string, fingerprint: string): Promise<void> {
    await this.profile.pin(canonicalUuid(accountId), fingerprint);
  }
}
