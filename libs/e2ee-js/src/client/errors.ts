/**
 * The SDK's errors: one small hierarchy mirroring `ecrin_client.errors`.
 *
 * An unknown account and a wrong passphrase are one error, `InvalidCredentials`: the gateway
 * answers both alike so that accounts cannot be enumerated, and the SDK does not pretend to
 * know better. Every failure to verify what a server sent is an `IntegrityError`, whose
 * message never says which check failed beyond what the user can act on.
 */

export class EcrinError extends Error {
  /** The problem slug (last path segment of the RFC 9457 `type`), when the server sent one. */
  readonly slug: string | undefined;
  readonly status: number | undefined;
  /** The server's reason for each field it refused (`{"email": "..."}`), from a 422's `errors`. */
  fields: Readonly<Record<string, string>> = {};

  constructor(message?: string, options: { slug?: string; status?: number } = {}) {
    super(message ?? "request failed");
    this.name = new.target.name;
    this.slug = options.slug;
    this.status = options.status;
  }
}

export class InvalidInput extends EcrinError {}
export class AuthError extends EcrinError {}
export class InvalidCredentials extends AuthError {
  constructor(message?: string, options: { slug?: string; status?: number } = {}) {
    super(message ?? "invalid email or passphrase", options);
  }
}
export class NotLoggedIn extends AuthError {
  constructor(message?: string) {
    super(message ?? "not signed in");
  }
}
export class SessionRevoked extends AuthError {
  constructor(message?: string, options: { slug?: string; status?: number } = {}) {
    super(message ?? "the session ended: sign in again", options);
  }
}
export class PermissionDenied extends AuthError {}
export class SecondFactorRequired extends EcrinError {
  constructor(message?: string, options: { slug?: string; status?: number } = {}) {
    super(message ?? "a second-factor code is required", options);
  }
}
export class NotFound extends EcrinError {}
export class Conflict extends EcrinError {}
export class RateLimited extends EcrinError {
  readonly retryAfter: number | undefined;
  constructor(message?: string, options: { slug?: string; status?: number; retryAfter?: number } = {}) {
    super(message ?? "too many requests: retry later", options);
    this.retryAfter = options.retryAfter;
  }
}
export class Unavailable extends EcrinError {
  readonly retryAfter: number | undefined;
  constructor(message?: string, options: { slug?: string; status?: number; retryAfter?: number } = {}) {
    super(message ?? "the service is unavailable: retry later", options);
    this.retryAfter = options.retryAfter;
  }
}
export class ServerError extends EcrinError {}
export class IntegrityError extends EcrinError {
  constructor(message?: string, options: { slug?: string; status?: number } = {}) {
    super(message ?? "what the server sent does not verify", options);
  }
}
export class IdentityMismatch extends IntegrityError {}

/** The one refusal for anything that does not verify: never says which check failed. */
export function integrityFailure(what = "the record"): IntegrityError {
  return new IntegrityError(
    `${what} does not verify: the server's data was altered, swapped or replayed. ` +
      "Refusing it; nothing was shown or written",
  );
}

type ErrorClass = new (message?: string, options?: { slug?: string; status?: number; retryAfter?: number }) => EcrinError;

const SLUGS: Record<string, ErrorClass> = {
  "invalid-credentials": InvalidCredentials,
  "second-factor-required": SecondFactorRequired,
  "refresh-token-reused": SessionRevoked,
  "session-revoked": SessionRevoked,
  "email-taken": Conflict,
  "account-exists": Conflict,
  "idempotency-key-reused": Conflict,
  "not-found": NotFound,
  "rate-limited": RateLimited,
  "too-many-requests": RateLimited,
  // The server found its stored ciphertext incomplete: an integrity failure too.
  "content-unavailable": IntegrityError,
};

const STATUS: Record<number, ErrorClass> = {
  400: InvalidInput, 401: AuthError, 403: PermissionDenied, 404: NotFound, 409: Conflict,
  413: InvalidInput, 422: InvalidInput, 429: RateLimited,
  502: Unavailable, 503: Unavailable, 504: Unavailable,
};

/** (slug, detail) of an RFC 9457 problem body already parsed; undefined when it is not one. */
export function problemOf(body: unknown): { slug?: string; detail?: string } {
  if (typeof body !== "object" || body === null) return {};
  const record = body as Record<string, unknown>;
  let slug: string | undefined;
  if (typeof record.type === "string") {
    slug = record.type.replace(/\/+$/, "").split("/").pop();
    if (slug === "about:blank") slug = undefined;
  }
  const detail = record.detail ?? record.title;
  return { slug, detail: typeof detail === "string" ? detail : undefined };
}

function retryAfter(headers: Headers): number | undefined {
  const value = headers.get("retry-after");
  if (value === null) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? Math.max(0, seconds) : undefined;
}

/** Where a field sits in a request, as FastAPI's validation errors name it: not shown. */
const LOCATIONS = new Set(["body", "query", "path", "header", "cookie"]);

/** `{field: reason}` from the `errors` of a problem body (FastAPI's `loc` and `msg`), as
 * `ecrin_client.errors.problem_fields`: the dotted path without its location. */
export function problemFields(body: unknown): Record<string, string> {
  const errors = typeof body === "object" && body !== null ? (body as Record<string, unknown>).errors : undefined;
  const fields: Record<string, string> = {};
  if (!Array.isArray(errors)) return fields;
  for (const error of errors.slice(0, 10)) {
    if (typeof error !== "object" || error === null || typeof (error as { msg?: unknown }).msg !== "string") continue;
    const raw = (error as { loc?: unknown }).loc;
    let loc = (Array.isArray(raw) ? raw : []).filter((part) => typeof part !== "object").map(String);
    if (loc.length > 0 && LOCATIONS.has(loc[0]!)) loc = loc.slice(1);
    const name = loc.join(".") || "request";
    fields[name] ??= (error as { msg: string }).msg;
  }
  return fields;
}

/** The typed error for an error response (its body already read as `body`). */
export function errorFromResponse(status: number, headers: Headers, body: unknown): EcrinError {
  const error = typedError(status, headers, body);
  error.fields = problemFields(body);
  return error;
}

function typedError(status: number, headers: Headers, body: unknown): EcrinError {
  const { slug, detail } = problemOf(body);
  const cls: ErrorClass =
    (slug !== undefined ? SLUGS[slug] : undefined) ?? STATUS[status] ?? (status >= 500 ? ServerError : InvalidInput);
  // The server's detail is shown for validation errors only: for authentication errors the
  // SDK's own fixed wording is the one clear sentence the user needs.
  let message =
    cls === InvalidInput || cls === Conflict || cls === NotFound || cls === PermissionDenied ? detail : undefined;
  if (cls === RateLimited || cls === Unavailable) {
    return new cls(cls === Unavailable ? message : undefined, { slug, status, retryAfter: retryAfter(headers) });
  }
  if (cls === Conflict && slug && !message) message = slug.replaceAll("-", " ");
  return new cls(message, { slug, status });
}
