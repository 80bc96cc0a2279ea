/**
 * An unlocked account: the identity keys in memory and the SDK's domains over them.
 *
 *     const client = await EcrinClient.open("https://ecrin.example.fr", { store });
 *     await client.login(email, passphrase);
 *     const session = openSession(client, await client.unlock(passphrase));
 *     const patient = await session.patients.create({ name: "Jeanne Martin", birth_date: "1980-02-03" });
 */

import type { IdentityKeys } from "./core.ts";
import { collectAudit, type AuditTrail } from "./audit.ts";
import type { EcrinClient } from "./client.ts";
import type { Spool } from "./content.ts";
import { Patients } from "./patients.ts";
import { Records } from "./records.ts";
import { Sharing } from "./sharing.ts";

export interface Session {
  readonly identity: IdentityKeys;
  readonly records: Records;
  readonly patients: Patients;
  readonly sharing: Sharing;
  /** The file's audit chains, each verified (heads and service keys remembered in the profile). */
  audit(fileId: string): Promise<AuditTrail>;
}

export function openSession(client: EcrinClient, identity: IdentityKeys, options: { spool?: () => Spool } = {}): Session {
  const records = new Records(client, identity, options);
  return {
    identity,
    records,
    patients: new Patients(records),
    sharing: new Sharing(records, { slow: client.slow, kdfProfile: client.kdfProfile }),
    audit: (fileId) => collectAudit(client.transport, fileId, client.profile),
  };
}
