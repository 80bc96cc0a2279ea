/**
 * Which Argon2id parameters the SDK uses for new keys, and the weakest it accepts from a
 * server (mirrors `ecrin_client.kdf_policy`).
 *
 * `moderate` (default: libsodium MODERATE), `sensitive`, or `insecure-test` (the libsodium
 * minimum, for automated tests against a gateway whose own minimum was lowered). In Node the
 * default comes from `ECRIN_KDF_PROFILE`, as for the Python CLI. A server that hands out
 * weak parameters at login would receive a signature it could brute-force cheaply, so the
 * SDK refuses parameters below the floor, and above the ceiling (a server must not be able
 * to hang the device or exhaust its memory).
 */

import { KdfParams } from "./core.ts";
import { IntegrityError, InvalidInput } from "./errors.ts";

export type KdfProfile = "moderate" | "sensitive" | "insecure-test";
const PROFILES: readonly KdfProfile[] = ["moderate", "sensitive", "insecure-test"];

export function kdfProfileFromEnv(): KdfProfile {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const name = (env?.ECRIN_KDF_PROFILE ?? "moderate").trim().toLowerCase() || "moderate";
  if (!PROFILES.includes(name as KdfProfile)) {
    throw new InvalidInput(`ECRIN_KDF_PROFILE must be one of ${PROFILES.join(", ")}`);
  }
  return name as KdfProfile;
}

export function defaultParams(profile: KdfProfile): KdfParams {
  if (profile === "sensitive") return KdfParams.sensitive();
  if (profile === "insecure-test") return KdfParams.insecureForTests();
  return KdfParams.moderate();
}

export function floor(profile: KdfProfile): KdfParams {
  return profile === "insecure-test" ? KdfParams.insecureForTests() : KdfParams.moderate();
}

export function checkServerParams(params: KdfParams, profile: KdfProfile): void {
  if (!params.withinCeiling()) {
    throw new IntegrityError("the server asked for key-derivation parameters above what this client accepts " +
      `(at most ${KdfParams.CEILING_OPSLIMIT} passes and ${KdfParams.CEILING_MEMLIMIT / 2 ** 20} MiB); refusing to derive`);
  }
  const minimum = floor(profile);
  if (params.opslimit < minimum.opslimit || params.memlimit < minimum.memlimit) {
    throw new IntegrityError("the server asked for key-derivation parameters weaker than this client accepts; " +
      "refusing to sign in");
  }
}
