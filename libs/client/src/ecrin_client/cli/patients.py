"""`ecrin patient create | list | show`: identities are decrypted here, never on a server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from ecrin_client.cli.runtime import JsonOption, ServerOption, StdinOption, runtime
from ecrin_client.cli.unlocked import with_records
from ecrin_client.errors import InvalidInput
from ecrin_client.ids import short
from ecrin_client.kine import PatientIdentity, parse_day
from ecrin_client.patients import Patient, Patients
from ecrin_client.records import Records

if TYPE_CHECKING:
    from rich.console import Console

patient_app = typer.Typer(help="Patients: create, list, search, show.", no_args_is_help=True)

PatientArgument = Annotated[str, typer.Argument(
    metavar="PATIENT", help="Patient file id (or its first characters), or a search "
    "(name, INS, birth date) that matches one patient.")]


def identity_row(patient: Patient) -> tuple[str, str, str, str]:
    identity = patient.identity
    if identity is None:
        return short(patient.file_id), patient.name, "", ""
    return (short(patient.file_id), identity.name, identity.birth_date.strftime("%d/%m/%Y"),
            identity.ins or "")


def print_patients(console: Console, patients: list[Patient]) -> None:
    if not patients:
        console.print("No patient.")
        return
    from rich.table import Table

    table = Table("file", "name", "birth date", "INS")
    for patient in patients:
        table.add_row(*identity_row(patient))
    console.print(table)


@patient_app.command("create")
def create(ctx: typer.Context,
           name: Annotated[str, typer.Option("--name", help="Full name, e.g. 'Marie Dupont'.")],
           birth_date: Annotated[str, typer.Option(
               "--birth-date", help="JJ/MM/AAAA or AAAA-MM-JJ.")],
           ins: Annotated[str | None, typer.Option("--ins", help="INS (NIR, 15 chars).")] = None,
           phone: Annotated[str | None, typer.Option("--phone")] = None,
           email: Annotated[str | None, typer.Option("--email")] = None,
           json_: JsonOption = False, server: ServerOption = None,
           passphrase_stdin: StdinOption = False) -> None:
    """Create a patient file, its keyring and its encrypted identity. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    def parse() -> PatientIdentity:
        try:
            return PatientIdentity(name=name, birth_date=parse_day(birth_date, "birth date"),
                                   ins=ins, phone=phone, email=email)
        except ValueError as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise InvalidInput(f"invalid patient identity: {detail}") from None

    identity = rt.local(parse)

    async def flow(_records: Records, patients: Patients) -> Patient:
        return await patients.create(identity)

    patient = with_records(rt, flow)
    rt.emit(patient.to_json(), lambda console: console.print(
        f"Patient [bold]{identity.name}[/] created: file {patient.file_id}"))


@patient_app.command("list")
def list_(ctx: typer.Context,
          search: Annotated[str | None, typer.Option(
              "--search", help="Name (any case or accents), INS or birth date.")] = None,
          json_: JsonOption = False, server: ServerOption = None,
          passphrase_stdin: StdinOption = False) -> None:
    """Your patients, their identities decrypted here. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(_records: Records, patients: Patients) -> list[Patient]:
        return await patients.list(search)

    found = with_records(rt, flow)
    rt.emit([p.to_json() for p in found], lambda console: print_patients(console, found))


@patient_app.command("show")
def show(ctx: typer.Context, patient: PatientArgument, json_: JsonOption = False,
         server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """One patient's identity and contact details. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(_records: Records, patients: Patients) -> Patient:
        return await patients.get(patient)

    found = with_records(rt, flow)

    def lines() -> list[str]:
        out = [f"{typer.style(found.name, bold=True)}  (file {found.file_id}, "
               f"{found.relationship})"]
        if found.identity is not None:
            for label, value in (
                    ("birth date", found.identity.birth_date.strftime("%d/%m/%Y")),
                    ("INS", found.identity.ins), ("phone", found.identity.phone),
                    ("email", found.identity.email)):
                if value:
                    out.append(f"{label}: {value}")
        return out

    # Plain lines, not Rich: the command a practitioner runs most, served by the agent,
    # starts faster without it (docs/cli.md, "Start-up and speed").
    rt.emit_lines(found.to_json(), lines)


def register(app: typer.Typer) -> None:
    app.add_typer(patient_app, name="patient")
