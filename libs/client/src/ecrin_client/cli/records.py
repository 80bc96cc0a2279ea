"""`ecrin record add | note | list | get | history | delete`: encrypted on this device."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ecrin_client import ids
from ecrin_client.cli.notes_view import print_note
from ecrin_client.cli.patients import PatientArgument
from ecrin_client.cli.runtime import JsonOption, Runtime, ServerOption, StdinOption, runtime
from ecrin_client.cli.unlocked import with_records
from ecrin_client.contacts import Contacts
from ecrin_client.errors import InvalidInput, NotFound
from ecrin_client.ids import short
from ecrin_client.kine import (
    DOCUMENT_KINDS,
    NOTE_KINDS,
    RecordMetadata,
    default_scope,
    document_name,
    parse_day,
    parse_note,
    sniff_content_type,
)
from ecrin_client.patients import Patients
from ecrin_client.records import RecordInfo, Records

record_app = typer.Typer(help="Records of a patient: documents, notes, versions.",
                         no_args_is_help=True)

RecordArgument = Annotated[str, typer.Argument(
    metavar="RECORD", help="Record id, or its first characters (as `record list` shows it).")]
ScopeOption = Annotated[str | None, typer.Option(
    "--scope", help="clinical | shared | administrative (default: by kind).")]
TitleOption = Annotated[str | None, typer.Option("--title", help="Title (encrypted).")]
DateOption = Annotated[str | None, typer.Option(
    "--date", help="JJ/MM/AAAA or AAAA-MM-JJ (default today).")]
VersionOfOption = Annotated[str | None, typer.Option(
    "--version-of", metavar="RECORD", help="Add a new version of this record instead.")]
_SCOPES = ("clinical", "shared", "administrative")


def _day(value: str | None) -> dt.date:
    return dt.date.today() if value is None else parse_day(value, "--date")


_HOLD = re.compile(r"(?:(\d+)\s*(?:min|mn|m))?\s*(?:(\d+)\s*(?:s|sec|secs|seconds?))?")


def _exercise(text: str) -> dict[str, Any]:
    """'name;sets;reps or hold;frequency': '12' is 12 repetitions, '30s', '1min' or
    '1min30s' a position held that long."""
    parts = [p.strip() for p in text.split(";")]
    if len(parts) > 4 or not parts[0]:
        raise InvalidInput("--exercise is 'name;sets;reps or hold (12, 30s, 1min);frequency'")
    exercise: dict[str, Any] = {"name": parts[0]}
    if len(parts) > 1 and parts[1]:
        exercise["sets"] = parts[1]
    amount = parts[2].lower() if len(parts) > 2 else ""
    if amount.isdigit():
        exercise["reps"] = amount
    elif amount:
        match = _HOLD.fullmatch(amount)
        if not match or not any(match.groups()):
            raise InvalidInput(f"--exercise: {parts[2]!r} is neither a number of repetitions "
                               "(12) nor a hold duration (30s, 1min, 1min30s)")
        minutes, seconds = (int(g or 0) for g in match.groups())
        exercise["hold_seconds"] = minutes * 60 + seconds
    if len(parts) > 3 and parts[3]:
        exercise["frequency"] = parts[3]
    return exercise


def _scope(scope: str | None, kind: str) -> str:
    chosen = scope or default_scope(kind)
    if chosen not in _SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(_SCOPES)}")
    return chosen


async def _in_patient(records: Records, patients: Patients, patient: str, record: str
                      ) -> tuple[str, str]:
    """(file id, record id), the record checked to belong to the patient's file. ``record``
    may be the first characters of the id (as the tables show it)."""
    file_id = await patients.file_id(patient)
    if ids.needs_lookup(record):
        record = ids.resolve(record, (r.record_id for r in await records.list(file_id)),
                             "record")
    info = await records.get(record)
    if info.file_id != file_id:
        raise NotFound("no such record for this patient")
    return file_id, info.record_id


async def _write(records: Records, patients: Patients, patient: str, version_of: str | None,
                 scope: str, metadata: RecordMetadata, content: bytes | Path) -> RecordInfo:
    if version_of is not None:
        _, record_id = await _in_patient(records, patients, patient, version_of)
        return await records.add_version(record_id, metadata, content)
    file_id = await patients.file_id(patient)
    await patients.check_scope(file_id, scope, write=True)
    return await records.create(file_id, scope, metadata, content)


def _written(rt: Runtime, info: RecordInfo) -> None:
    rt.emit(info.to_json(), lambda console: console.print(
        f"{info.metadata.kind} [bold]{info.metadata.title}[/] saved: record {info.record_id}, "
        f"version {info.version} ({info.scope})"))


@record_app.command("add")
def add(ctx: typer.Context, patient: PatientArgument,
        file: Annotated[Path, typer.Argument(metavar="FILE", exists=True, dir_okay=False,
                                             readable=True, help="A PDF, JPEG or PNG.")],
        kind: Annotated[str, typer.Option("--kind", help=" | ".join(DOCUMENT_KINDS))
                        ] = "document",
        title: TitleOption = None, scope: ScopeOption = None, date: DateOption = None,
        version_of: VersionOfOption = None, json_: JsonOption = False,
        server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """Encrypt and upload a document (streamed, any size up to the server's limit)."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    def prepare() -> tuple[str, RecordMetadata]:
        if kind not in DOCUMENT_KINDS:
            raise InvalidInput(f"--kind must be one of {', '.join(DOCUMENT_KINDS)}")
        with open(file, "rb") as f:
            content_type = sniff_content_type(f.read(16))
        return _scope(scope, kind), RecordMetadata(
            title=title or file.name, kind=kind, content_type=content_type,
            size=file.stat().st_size, created_at=dt.datetime.now(dt.UTC),
            date=_day(date), filename=file.name)

    chosen, metadata = rt.local(prepare)
    info = with_records(rt, lambda records, patients: _write(
        records, patients, patient, version_of, chosen, metadata, file), progress=True)
    _written(rt, info)


def _note_fields(kind: str, **options: Any) -> dict[str, Any]:
    day = _day(options["date"]).isoformat()
    if kind == "session-note":
        return {"date": day, "acts": options["act"], "pain": options["pain"],
                "notes": options["notes"] or ""}
    if kind == "bilan":
        return {"date": day, "motif": options["motif"] or "",
                "prescription_ref": options["prescription_ref"],
                "anamnesis": options["anamnesis"] or "", "clinical_exam": options["exam"] or "",
                "diagnostic_kine": options["diagnostic"] or "",
                "objectives": options["objective"], "plan": options["plan"] or ""}
    exercises = [_exercise(text) for text in options["exercise"]]
    return {"date": day, "exercises": exercises, "notes": options["notes"] or ""}


_TITLES = {"session-note": "Séance", "bilan": "Bilan diagnostic kinésithérapique",
           "exercise-program": "Programme d'exercices"}


@record_app.command("note")
def note(ctx: typer.Context, patient: PatientArgument,
         kind: Annotated[str, typer.Option("--kind", help=" | ".join(NOTE_KINDS))
                         ] = "session-note",
         from_json: Annotated[str | None, typer.Option(
             "--from-json", metavar="FILE", help="The note as JSON ('-' for stdin).")] = None,
         title: TitleOption = None, scope: ScopeOption = None, date: DateOption = None,
         act: Annotated[list[str], typer.Option("--act", help="Act code, e.g. 'AMK 7.5' "
                                                "(repeat).")] = [],  # noqa: B006 (the framework copies list defaults; never mutated)
         pain: Annotated[int | None, typer.Option("--pain", help="Pain 0-10 (EVA).")] = None,
         notes: Annotated[str | None, typer.Option("--notes")] = None,
         motif: Annotated[str | None, typer.Option("--motif", help="Bilan: reason.")] = None,
         prescription_ref: Annotated[str | None, typer.Option("--prescription-ref")] = None,
         anamnesis: Annotated[str | None, typer.Option("--anamnesis")] = None,
         exam: Annotated[str | None, typer.Option("--exam", help="Clinical exam.")] = None,
         diagnostic: Annotated[str | None, typer.Option("--diagnostic",
                                                        help="Diagnostic kiné.")] = None,
         objective: Annotated[list[str], typer.Option("--objective")] = [],  # noqa: B006 (the framework copies list defaults; never mutated)
         plan: Annotated[str | None, typer.Option("--plan")] = None,
         exercise: Annotated[list[str], typer.Option(
             "--exercise", help="'name;sets;reps or hold;frequency', e.g. 'Gainage;3;30s;"
             "daily' or 'Squats;3;12' (repeat).")] = [],  # noqa: B006 (the framework copies list defaults; never mutated)
         version_of: VersionOfOption = None, json_: JsonOption = False,
         server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """Write a session note, a bilan or an exercise program (typed, validated, encrypted)."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    def prepare() -> tuple[str, RecordMetadata, bytes]:
        if kind not in NOTE_KINDS:
            raise InvalidInput(f"--kind must be one of {', '.join(NOTE_KINDS)}")
        if from_json is not None:
            raw = sys.stdin.read() if from_json == "-" else Path(from_json).read_text("utf-8")
            content = parse_note(kind, raw)
        else:
            content = parse_note(kind, _note_fields(
                kind, date=date, act=act, pain=pain, notes=notes, motif=motif,
                prescription_ref=prescription_ref, anamnesis=anamnesis, exam=exam,
                diagnostic=diagnostic, objective=objective, plan=plan, exercise=exercise))
        data = content.to_bytes()
        day = getattr(content, "date", None)
        return _scope(scope, kind), RecordMetadata(
            title=title or f"{_TITLES[kind]} {day or ''}".strip(), kind=kind,
            content_type="application/json", size=len(data),
            created_at=dt.datetime.now(dt.UTC), date=day), data

    if from_json == "-" and rt.passphrase_stdin:
        raise rt.fail(InvalidInput("--from-json - and --passphrase-stdin both read stdin"))
    chosen, metadata, data = rt.local(prepare)
    info = with_records(rt, lambda records, patients: _write(
        records, patients, patient, version_of, chosen, metadata, data))
    _written(rt, info)


@record_app.command("list")
def list_(ctx: typer.Context, patient: PatientArgument, scope: ScopeOption = None,
          json_: JsonOption = False, server: ServerOption = None,
          passphrase_stdin: StdinOption = False) -> None:
    """The patient's records you may read, titles decrypted here."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients) -> list[RecordInfo]:
        return await records.list(await patients.file_id(patient), scope)

    found = with_records(rt, flow)

    def human(console: Console) -> None:
        table = Table("record", "kind", "title", "date", "version", "scope")
        for info in found:
            day = info.metadata.date or (info.created_at.date() if info.created_at else None)
            table.add_row(short(info.record_id), info.metadata.kind, info.metadata.title,
                          day.strftime("%d/%m/%Y") if day else "", str(info.version),
                          info.scope)
        console.print(table if found else "No record.")

    rt.emit([info.to_json() for info in found], human)


@record_app.command("get")
def get(ctx: typer.Context, patient: PatientArgument, record: RecordArgument,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write the content to this file (required for documents).")
        ] = None,
        version: Annotated[int | None, typer.Option("--version", min=1)] = None,
        json_: JsonOption = False, server: ServerOption = None,
        passphrase_stdin: StdinOption = False) -> None:
    """Download, verify and decrypt a record; notes are printed, documents written (-o)."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    author = ""

    async def flow(records: Records, patients: Patients) -> tuple[RecordInfo, Any]:
        nonlocal author
        file_id, record_id = await _in_patient(records, patients, patient, record)
        contacts = Contacts(records.client.profile, records.identity)
        await contacts.bind_invitees(records.trust, file_id)
        if output is not None:
            info = await records.download(record_id, output, version)
            author = contacts.label(info.author_id)
            return info, None
        info, content = await records.read(record_id, version)
        author = contacts.label(info.author_id)
        if info.metadata.content_type != "application/json":
            raise InvalidInput(f"this record is {document_name(info.metadata.content_type)}: "
                               "save it with -o FILE")
        return info, json.loads(content)

    info, content = with_records(rt, flow, progress=output is not None)

    def human(console: Console) -> None:
        console.print(f"[bold]{info.metadata.title}[/] ({info.metadata.kind}, version "
                      f"{info.version}, author {escape(author)}): signature verified")
        if output is not None:
            console.print(f"Written to {output} ({info.metadata.size} bytes).", markup=False)
        else:
            print_note(console, content)

    rt.emit({"record": info.to_json(), "content": content,
             "output": str(output) if output else None}, human)


@record_app.command("history")
def history(ctx: typer.Context, patient: PatientArgument, record: RecordArgument,
            json_: JsonOption = False, server: ServerOption = None,
            passphrase_stdin: StdinOption = False) -> None:
    """Every version of a record, newest first, each signature verified."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients
                   ) -> tuple[list[RecordInfo], Contacts]:
        file_id, record_id = await _in_patient(records, patients, patient, record)
        contacts = Contacts(records.client.profile, records.identity)
        await contacts.bind_invitees(records.trust, file_id)
        return await records.history(record_id), contacts

    versions, contacts = with_records(rt, flow)

    def human(console: Console) -> None:
        table = Table("version", "title", "saved", "author", "size")
        for info in versions:
            author = escape(contacts.label(info.author_id))
            saved = info.created_at or info.metadata.created_at
            table.add_row(str(info.version), info.metadata.title,
                          saved.astimezone().strftime("%d/%m/%Y %H:%M") if saved else "",
                          author, str(info.metadata.size))
        console.print(table)

    rt.emit([info.to_json() for info in versions], human)


@record_app.command("delete")
def delete(ctx: typer.Context, patient: PatientArgument, record: RecordArgument,
           json_: JsonOption = False, server: ServerOption = None,
           passphrase_stdin: StdinOption = False) -> None:
    """Delete a record (a tombstone now; the ciphertext is purged later)."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients) -> RecordInfo:
        _, record_id = await _in_patient(records, patients, patient, record)
        return await records.delete(record_id)

    info = with_records(rt, flow)
    rt.emit({"deleted": info.record_id, "version": info.current_version},
            lambda console: console.print(f"Record {info.record_id} deleted."))


def register(app: typer.Typer) -> None:
    app.add_typer(record_app, name="record")
