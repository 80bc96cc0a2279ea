/**
 * HTTP to the gateway over `fetch`: bearer tokens, one automatic refresh on 401, typed errors
 * (mirrors `ecrin_client.transport`).
 *
 * The refresh token rotates on every use and a reused one revokes the whole session, so two
 * concurrent requests must never both refresh: one promise serialises refreshes, and a request
 * that waited for it retries with the tokens the other one obtained. `fetch` is injectable
 * (tests pass their own); it is the platform's in browsers and Node alike.
 */

import {
  EcrinError, errorFromResponse, NotLoggedIn, problemOf, ServerError, SessionRevoked, Unavailable,
} from "./errors.ts";
import type { StoredTokens } from "./state.ts";
import type { TokenPair, UnlockBundle } from "./api-types.ts";

export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;
type Query = Record<string, string | number | undefined>;
/** A body that can be produced again (an upload is re-sent after a token refresh). */
export type Body = Uint8Array | Blob | (() => Blob | Uint8Array);

export interface RequestOptions {
  json?: unknown;
  body?: Body;
  headers?: Record<string, string>;
  auth?: boolean;
  ok?: readonly number[];
  params?: Query;
}


export class GatewayTransport {
  readonly serverUrl: string;
  tokens: StoredTokens | undefined;
  private readonly onTokens: (tokens: StoredTokens | undefined) => Promise<void>;
  private readonly fetch: Fetch;
  private readonly timeoutMs: number;
  private refreshing: Promise<string> | undefined;

  constructor(serverUrl: string, options: {
    tokens: StoredTokens | undefined;
    onTokens: (tokens: StoredTokens | undefined) => Promise<void>;
    fetch?: Fetch;
    timeoutMs?: number;
  }) {
    this.serverUrl = serverUrl.replace(/\/+$/, "");
    this.tokens = options.tokens;
    this.onTokens = options.onTokens;
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  async setTokens(tokens: StoredTokens | undefined): Promise<void> {
    this.tokens = tokens;
    await this.onTokens(tokens);
  }

  async adopt(pair: TokenPair): Promise<StoredTokens> {
    const tokens = { access_token: pair.access_token, refresh_token: pair.refresh_token, session_id: pair.session_id };
    await this.setTokens(tokens);
    return tokens;
  }

  url(path: string, params?: Query): string {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params ?? {})) {
      if (value !== undefined) query.set(key, String(value));
    }
    const text = query.toString();
    return `${this.serverUrl}${path}${text ? (path.includes("?") ? "&" : "?") + text : ""}`;
  }

  private async send(method: string, path: string, options: RequestOptions, token: string | undefined,
    signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    let body: BodyInit | undefined;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    } else if (options.body !== undefined) {
      const made = typeof options.body === "function" ? options.body() : options.body;
      body = made instanceof Uint8Array ? (made as Uint8Array<ArrayBuffer>) : made;
    }
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      return await this.fetch(this.url(path, options.params), {
        method, headers, body, signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      if (error instanceof EcrinError) throw error;
      if ((error as { name?: string }).name === "TimeoutError") {
        throw new Unavailable(`the server at ${this.serverUrl} did not answer in time`);
      }
      throw new Unavailable(`cannot reach the server at ${this.serverUrl}`);
    }
  }

  private async authorised(method: string, path: string, options: RequestOptions): Promise<Response> {
    const auth = options.auth ?? true;
    let token: string | undefined;
    if (auth) {
      if (this.tokens === undefined) throw new NotLoggedIn();
      token = this.tokens.access_token;
    }
    let response = await this.send(method, path, options, token);
    if (auth && response.status === 401) {
      const body = await readJson(response);
      if (!["second-factor-required", "invalid-credentials"].includes(problemOf(body).slug ?? "")) {
        token = await this.refreshed(token);
        response = await this.send(method, path, options, token);
      } else {
        throw errorFromResponse(response.status, response.headers, body);
      }
    }
    return response;
  }

  /** Send, refreshing once on 401 when authenticated; raise the typed error otherwise. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const response = await this.authorised(method, path, options);
    if (!(options.ok ?? [200]).includes(response.status)) {
      throw errorFromResponse(response.status, response.headers, await readJson(response));
    }
    return response;
  }

  /** `request`, then the JSON body (a body that is not JSON is a `ServerError`). */
  async json<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const response = await this.request(method, path, options);
    const body = await readJson(response);
    if (body === undefined) throw new ServerError("the server sent a response that does not follow the API");
    return body as T;
  }

  /** A response whose body is read as it arrives (downloads). */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<ReadableStream<Uint8Array>> {
    const response = await this.request(method, path, options);
    if (response.body === null) return new ReadableStream({ start: (c) => c.close() });
    return response.body;
  }

  async refreshed(after: string | undefined): Promise<string> {
    while (this.refreshing !== undefined) {
      try {
        await this.refreshing;
      } catch {
        // the other refresh's caller reports its failure; this one looks at the tokens
      }
    }
    if (this.tokens === undefined) throw new NotLoggedIn();
    if (this.tokens.access_token !== after) return this.tokens.access_token; // refreshed meanwhile
    const refresh = this.tokens.refresh_token;
    this.refreshing = (async () => {
      const response = await this.send("POST", "/v1/auth/refresh", { json: { refresh_token: refresh } }, undefined);
      const body = await readJson(response);
      if (response.status !== 200) {
        const error = errorFromResponse(response.status, response.headers, body);
        if ([400, 401, 403].includes(response.status)) {
          await this.setTokens(undefined);
          throw new SessionRevoked(undefined, { slug: error.slug, status: error.status });
        }
        throw error;
      }
      return (await this.adopt(tokenPair(body))).access_token;
    })();
    try {
      return await this.refreshing;
    } finally {
      this.refreshing = undefined;
    }
  }
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return undefined;
  }
}

/** The unlock answer a login carried, in the shape `GET /v1/keys/me/unlock/{salt}` gives
 * (its contents are checked where they are used, as that answer's). */
export function unlockBundle(body: unknown): UnlockBundle {
  const bundle = body as UnlockBundle;
  if (typeof bundle !== "object" || bundle === null || typeof bundle.wrap !== "object" || bundle.wrap === null
    || typeof bundle.directory !== "object" || bundle.directory === null) {
    throw new ServerError("the server sent a response that does not follow the API");
  }
  return bundle;
}

export function tokenPair(body: unknown): TokenPair {
  const pair = body as TokenPair;
  if (typeof pair !== "object" || pair === null || typeof pair.access_token !== "string"
    || typeof pair.refresh_token !== "string" || typeof pair.session_id !== "string"
    || typeof pair.account !== "object" || pair.account === null || typeof pair.account.id !== "string") {
    throw new ServerError("the server sent a response that does not follow the API");
  }
  return pair;
}
