/**
 * Request and response types of the API, taken from the generated `api.d.ts` by path and
 * method (never by operation id or schema name, which the services may rename).
 *
 * `api.d.ts` is generated from the gateway's merged OpenAPI document by
 * `scripts/gen_api.py`; nothing here is written by hand but these lookups.
 */

import type { paths } from "./api.d.ts";

export type { paths };
type Method = "get" | "put" | "post" | "delete" | "patch";
type Operation<P extends keyof paths, M extends Method> = NonNullable<paths[P][M]>;

/** The JSON body a path answers with, for a status (200 by default). */
export type ResponseOf<P extends keyof paths, M extends Method, S extends number = 200> =
  Operation<P, M> extends { responses: infer R }
    ? S extends keyof R
      ? R[S] extends { content: { "application/json": infer T } } ? T : never
      : never
    : never;

/** The JSON body a path takes. */
export type RequestOf<P extends keyof paths, M extends Method> =
  Operation<P, M> extends { requestBody?: { content: { "application/json": infer T } } } ? T : never;

export type TokenPair = ResponseOf<"/v1/auth/login", "post">;
export type Challenge = ResponseOf<"/v1/auth/challenge", "post">;
export type SignupBody = RequestOf<"/v1/auth/signup", "post">;
export type SignupResult = ResponseOf<"/v1/auth/signup", "post", 202>;
export type Me = ResponseOf<"/v1/auth/me", "get">;
export type SessionInfo = ResponseOf<"/v1/auth/sessions", "get">;
export type DirectoryEntry = ResponseOf<"/v1/directory/{account_id}", "get">;
export type UnlockBundle = ResponseOf<"/v1/keys/me/unlock/{key_id}", "get">;
export type FileView = ResponseOf<"/v1/files/{file_id}", "get">;
export type FilePage = ResponseOf<"/v1/files", "get">;
export type RecordView = ResponseOf<"/v1/records/{record_id}", "get">;
export type RecordPage = ResponseOf<"/v1/records", "get">;
export type VersionPage = ResponseOf<"/v1/records/{record_id}/versions", "get">;
export type VersionView = ResponseOf<"/v1/records/{record_id}/versions/{version}", "get">;
export type CreateRecordBody = RequestOf<"/v1/records", "post">;
export type HeaderPage = ResponseOf<"/v1/records/headers", "get">;
export type KeyringEntries = ResponseOf<"/v1/keyrings/{file_id}/entries", "get">;
export type GrantView = ResponseOf<"/v1/grants/{grant_id}", "get">;
export type GrantBody = RequestOf<"/v1/grants", "post">;
export type InvitationBody = RequestOf<"/v1/invitations", "post">;
export type InvitationLookup = ResponseOf<"/v1/invitations/lookup/{lookup_id}", "get">;
export type Members = ResponseOf<"/v1/files/{file_id}/members", "get">;
export type Rotations = ResponseOf<"/v1/rotations", "get">;
