"""`ecrin audit PATIENT [--verify] [--fhir]`: who did what to a patient file, verified here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecrin_client.audit import AuditChain, AuditTrail, collect, scope_of, to_fhir
from ecrin_client.cli.runtime import JsonOption, ServerOption, StdinOption, runtime
from ecrin_client.cli.share import PatientArgument
from ecrin_client.cli.unlocked import with_records
from ecrin_client.contacts import Contacts
from ecrin_client.errors import IntegrityError
from ecrin_client.ids import short
from ecrin_client.patients import Patients
from ecrin_client.records import Records

audit_app = typer.Typer(
    subcommand_metavar="",
    help="A patient file's access history (hash-chained, verified here).")




def _chain_label(chain: AuditChain) -> str:
    return f"{chain.service} ({chain.scope or 'file'})"


def print_trail(console: Console, trail: AuditTrail, names: dict[str, str]) -> None:
    table = Table("time", "service", "scope", "who", "action", "target", "outcome",
                  title=f"Audit trail of file {short(trail.file_id)}")
    for e in trail.events():
        table.add_row(str(e.get("time"))[:19].replace("T", " "), str(e.get("service")),
                      scope_of(str(e.get("chain"))) or "file",
                      escape(names.get(str(e.get("actor")), short(str(e.get("actor"))))),
                      str(e.get("action")), short(str(e.get("target"))), str(e.get("outcome")))
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
                   ) -> tuple[AuditTrail, dict[str, str]]:
        file_id = await patients.file_id(patient)
        trail = await collect(records.client.transport, file_id, records.client.profile)
        contacts = Contacts(records.client.profile, records.identity)
        await contacts.bind_invitees(records.trust, file_id)
        actors = {str(e.get("actor")) for e in trail.events() if e.get("actor")}
        return trail, {a: contacts.label(a) for a in actors}

    trail, names = with_records(rt, flow)
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
                lambda console: print_trail(console, trail, names))
    if verify and not trail.verified:
        broken = ", ".join(f"{_chain_label(c)} at event {c.broken_at}"
                           for c in trail.chains if c.available and not c.verified)
        raise rt.fail(IntegrityError(f"the audit chain does not verify: {broken}"))
    if verify and not rt.json and not fhir:
        rt.err.print("[green]every available chain verifies[/]")
