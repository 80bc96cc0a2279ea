/**
 * Checking a login challenge before signing it (mirrors `ecrin_client.challenge`).
 *
 * The gateway's challenge is the UTF-8 text
 * `ecrin-auth-v1\n<host>\n<action>\n<challenge_id>\n<nonce b64>\n<expires unix seconds>`.
 * The SDK signs only a challenge made for the server it talks to and for the action it asked
 * for, so a signature obtained by another server, or for another action, is useless.
 */

import { IntegrityError } from "./errors.ts";

const PREFIX = "ecrin-auth-v1";

export function expectedHosts(serverUrl: string): Set<string> {
  const url = new URL(serverUrl);
  // URL drops a scheme's default port from `host`; Python's netloc keeps what was typed.
  const hosts = new Set([url.host.toLowerCase(), url.hostname.toLowerCase()]);
  const typed = /^[a-z]+:\/\/([^/?#]+)/i.exec(serverUrl)?.[1];
  if (typed !== undefined) hosts.add(typed.toLowerCase());
  return hosts;
}

export function checkChallenge(data: Uint8Array, serverUrl: string, action: string, challengeId: string): void {
  let lines: string[];
  try {
    lines = new TextDecoder("utf-8", { fatal: true }).decode(data).split("\n");
  } catch {
    throw new IntegrityError("the server sent a malformed login challenge");
  }
  if (lines.length !== 6 || lines[0] !== PREFIX || !/^\d+$/.test(lines[5]!)) {
    throw new IntegrityError("the server sent a malformed login challenge");
  }
  const [, host, gotAction, gotId] = lines as [string, string, string, string];
  if (!expectedHosts(serverUrl).has(host.toLowerCase())) {
    throw new IntegrityError(`the login challenge is bound to another server (${JSON.stringify(host)}); refusing to sign it`);
  }
  if (gotAction !== action || gotId !== challengeId) {
    throw new IntegrityError("the login challenge is for another action; refusing to sign it");
  }
}
