"""`ecrin audit PATIENT [--verify] [--fhir]`: who did what to a patient file, verified here."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecrin_client.audit import AuditChain, AuditTrail, collect, scope_of, to_fhir
from ecrin_client.cli.runtime import JsonOption, ServerOption, StdinOption, runtime
from ecrin_client.cli.share import PatientArgument, people_names
from ecrin_client.cli.unlocked import with_records
from ecrin_client.contacts import Contacts
from ecrin_client.errors import IntegrityError, NotFound, PermissionDenied
from ecrin_client.ids import short
from ecrin_client.patients import Patients
from ecrin_client.records import Records
from ecrin_client.sharing import Sharing, SharingOverview

audit_app = typer.Typer(
    subcommand_metavar="",
    help="A patient file's access history (hash-chained, verified here).")




def _when(stamp: str) -> str:
    """An event's time as JJ/MM/AAAA HH:MM:SS in local time (as the other tables show
    dates); as served if it does not parse."""
    try:
        return dt.datetime.fromisoformat(stamp).astimezone().strftime("%d/%m/%Y %H:%M:%S")
    except ValueError:
        return stamp


def _target(target: str) -> str:
    """``record:<uuid>`` -> ``record 1a2b3c4d`` (a short id, as elsewhere)."""
    kind, _, value = target.partition(":")
    return f"{kind} {short(value)}" if value else target


def _chain_label(chain: AuditChain) -> str:
    return f"{chain.service} ({chain.scope or 'file'})"


def print_trail(console: Console, trail: AuditTrail, names: dict[str, str],
                patient_name: str | None = None) -> None:
    whose = f"{escape(patient_name)}, file" if patient_name else "file"
    table = Table("time", "service", "scope", "who", "action", "target", "outcome",
                  title=f"Audit trail of {whose} {short(trail.file_id)}")
    for e in trail.events():
        table.add_row(_when(str(e.get("time"))), str(e.get("service")),
                      scope_of(str(e.get("chain"))) or "file",
                      escape(names.get(str(e.get("actor")), short(str(e.get("actor"))))),
                      str(e.get("action")), _target(str(e.get("target"))),
                      str(e.get("outcome")))
    console.print(table)
    for chain in trail.chains:
        signed = (chain.signed_head or {}).get("head", {}).get("time")
        if not chain.available:
            state = "not available to you"
        elif chain.broken_at is None:
            state = f"{len(chain.events)} events, chain verified, head signed {signed}"
        else:
            state = f"BROKEN at event {chain.broken_at}"
        console.print(f"{_chain_label(chain)}: {state}")


@audit_app.callback(invoke_without_command=True,
                    context_settings={"allow_interspersed_args": True})
def audit(ctx: typer.Context, patient: PatientArgument,
          verify: Annotated[bool, typer.Option(
              "--verify", help="Exit 7 unless every chain verifies.")] = False,
          fhir: Annotated[bool, typer.Option(
              "--fhir", help="Print a FHIR R4 Bundle of AuditEvent resources (JSON).")
                          ] = False,
          output: Annotated[Path | None, typer.Option(
              "-o", "--output", help="Write the output (FHIR or JSON) to this file.")] = None,
          json_: JsonOption = False, server: ServerOption = None,
          passphrase_stdin: StdinOption = False) -> None:
    """The file's history from the sharing service, the kms and the records-api (for the
    last two, the chain of each scope you may read: a patient sees the shared scope's, not
    the clinical one's), each chain's hashes recomputed here and its head checked against
    the service's signature (key pinned on first use) and against what this device
    verified before (exit 7 if a chain was cut or rewritten or is now hidden). For the
    owner, the patient and their representatives. Refused accesses show as "denied".
    Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients
                   ) -> tuple[AuditTrail, dict[str, str], str | None]:
        # The patient's identity (decrypted here) names the file and the patient's own
        # account among the actors; contact names given on this device name the others.
        found = await patients.get(patient)
        trail = await collect(records.client.transport, found.file_id, records.client.profile)
        await Contacts(records.client.profile, records.identity).bind_invitees(
            records.trust, found.file_id)
        try:
            overview: SharingOverview | None = await Sharing(records).overview(found.file_id)
        except (PermissionDenied, NotFound):
            overview = None  # this account may not list the file's grants
        actors = {str(e.get("actor")) for e in trail.events() if e.get("actor")}
        names = await people_names(records, patients, overview, also=actors, patient=found)
        return trail, {a: names[a] for a in actors}, (
            found.identity.name if found.identity else None)

    trail, names, patient_name = with_records(rt, flow)
    if fhir or output is not None:
        data = to_fhir(trail) if fhir else trail.to_json()
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        if output is not None:
            output.write_text(text + "\n", encoding="utf-8")
            if not rt.json:
                rt.err.print(f"written to {output}")
        else:
            typer.echo(text)
    else:
        rt.emit({**trail.to_json(), "names": names},
                lambda console: print_trail(console, trail, names, patient_name))
    if verify and not trail.verified:
        broken = ", ".join(f"{_chain_label(c)} at event {c.broken_at}"
                           for c in trail.chains if c.available and not c.verified)
        raise rt.fail(IntegrityError(f"the audit chain does not verify: {broken}"))
    if verify and not rt.json and not fhir:
        rt.err.print("[green]every available chain verifies[/]")
