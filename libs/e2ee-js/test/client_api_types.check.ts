/**
 * Type-level check, run by `npm run typecheck`: every request and response type the SDK
 * looks up by path and method in the generated `api.d.ts` still exists (neither `never`, when
 * a path, method or status disappeared, nor `unknown`). Regenerating the types after a
 * service change that breaks the SDK fails here, not in production.
 */

import type * as T from "../src/client/api-types.ts";

type Resolved<X> = [X] extends [never] ? "missing" : [unknown] extends [X] ? "untyped" : "ok";

export const tokenPair: Resolved<T.TokenPair> = "ok";
export const challenge: Resolved<T.Challenge> = "ok";
export const signupBody: Resolved<T.SignupBody> = "ok";
export const signupResult: Resolved<T.SignupResult> = "ok";
export const me: Resolved<T.Me> = "ok";
export const sessionInfo: Resolved<T.SessionInfo> = "ok";
export const directoryEntry: Resolved<T.DirectoryEntry> = "ok";
export const fileView: Resolved<T.FileView> = "ok";
export const filePage: Resolved<T.FilePage> = "ok";
export const recordView: Resolved<T.RecordView> = "ok";
export const recordPage: Resolved<T.RecordPage> = "ok";
export const versionPage: Resolved<T.VersionPage> = "ok";
export const versionView: Resolved<T.VersionView> = "ok";
export const createRecordBody: Resolved<T.CreateRecordBody> = "ok";
export const headerPage: Resolved<T.HeaderPage> = "ok";
export const keyringEntries: Resolved<T.KeyringEntries> = "ok";
export const grantView: Resolved<T.GrantView> = "ok";
export const grantBody: Resolved<T.GrantBody> = "ok";
export const invitationBody: Resolved<T.InvitationBody> = "ok";
export const invitationLookup: Resolved<T.InvitationLookup> = "ok";
export const members: Resolved<T.Members> = "ok";
export const rotations: Resolved<T.Rotations> = "ok";
