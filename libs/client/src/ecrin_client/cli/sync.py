"""`ecrin sync`: the key rotations left by revocations and expiries, done on this device."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ecrin_client.cli.runtime import JsonOption, ServerOption, StdinOption, runtime
from ecrin_client.cli.share import print_rotations
from ecrin_client.cli.unlocked import with_records
from ecrin_client.patients import Patients
from ecrin_client.records import Records
from ecrin_client.sharing import Rotated, Sharing

sync_app = typer.Typer(subcommand_metavar="",
                       help="Rotate the scope keys of revoked or expired grants and re-key "
                       "the records (content untouched).")


@sync_app.callback(invoke_without_command=True,
                   context_settings={"allow_interspersed_args": True})
def sync(ctx: typer.Context,
         patient: Annotated[str | None, typer.Argument(
             metavar="[PATIENT]", help="Only this patient file (id or search).")] = None,
         json_: JsonOption = False, server: ServerOption = None,
         passphrase_stdin: StdinOption = False) -> None:
    """Do every pending key rotation you may do: a new scope key version sealed to the
    remaining members, then every record re-keyed by re-wrapping its content key only.
    Writes run this first for their file. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients) -> list[Rotated]:
        file_id = await patients.file_id(patient) if patient else None
        return await Sharing(records).sync(file_id)

    done = with_records(rt, flow)

    def human(console: Console) -> None:
        if not done:
            console.print("Nothing to rotate.")
        print_rotations(console, done)

    rt.emit([r.to_json() for r in done], human)
