"""`ecrin share invite | grant | accept | list | revoke | defaults`: re-encryption grants."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from typing import Annotated

import qrcode
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ecrin_client.checks import check_invitation_code
from ecrin_client.cli.runtime import JsonOption, ServerOption, StdinOption, runtime
from ecrin_client.cli.unlocked import with_records
from ecrin_client.client import EcrinClient
from ecrin_client.contacts import Contacts, check_name
from ecrin_client.errors import InvalidInput
from ecrin_client.ids import resolve, short
from ecrin_client.patients import Patient, Patients
from ecrin_client.records import Records
from ecrin_client.sharing import (
    RELATIONSHIPS,
    Accepted,
    GrantView,
    Invited,
    Rotated,
    Sharing,
    SharingOverview,
    eighteenth_birthday,
)
from ecrin_client.trust import TrustStore

PatientArgument = Annotated[str, typer.Argument(
    metavar="PATIENT", help="Patient file id (or its first characters), or a search "
    "(name, INS, birth date) that matches one patient.")]


share_app = typer.Typer(help="Share a patient file: invitations, grants, revocation.",
                        no_args_is_help=True)

AsOption = Annotated[str, typer.Option("--as", metavar="RELATIONSHIP",
                                       help=" | ".join(RELATIONSHIPS))]
UntilOption = Annotated[str | None, typer.Option(
    "--until", metavar="DATE", help="Last day of access, YYYY-MM-DD (access ends at the "
    "following midnight UTC), or an ISO date-time. Required for a replacement; a parent's "
    "access ends at the patient's 18th birthday at the latest.")]
NameOption = Annotated[str | None, typer.Option(
    "--name", help="Your name for this person (e.g. 'Mme Dupont, mère'), shown instead of "
    "their account id once they redeem; kept encrypted on this device only.")]
ScopesOption = Annotated[str | None, typer.Option(
    "--scopes", help="Comma-separated scopes, each optionally =read or =append, e.g. "
    "'shared=read,administrative' (default: the relationship's defaults).")]


def parse_until(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        if len(value.strip()) == 10:
            day = dt.date.fromisoformat(value.strip()) + dt.timedelta(days=1)
            return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("--until is YYYY-MM-DD or an ISO date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_scopes(value: str | None, defaults: dict[str, str]) -> dict[str, str] | None:
    if value is None:
        return None
    chosen: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        scope, _, access = part.partition("=")
        chosen[scope.strip()] = access.strip() or defaults.get(scope.strip(), "read")
    if not chosen:
        raise InvalidInput("--scopes names no scope")
    return chosen


async def _terms(sharing: Sharing, patients: Patients, patient: str, relationship: str,
                 scopes: str | None, until: str | None
                 ) -> tuple[str, dict[str, str], dt.datetime | None]:
    """(file id, scopes, end): a parent's end is the 18th birthday read from the encrypted
    identity record here; the server only ever sees the date."""
    end = parse_until(until)
    if relationship == "parent":
        found = await patients.get(patient)
        if found.identity is None:
            raise InvalidInput("the patient's birth date is not readable on this device: "
                               "a parent grant needs it for its end date")
        birthday = eighteenth_birthday(found.identity.birth_date)
        if birthday <= dt.datetime.now(dt.UTC):
            raise InvalidInput("the patient is an adult: parental authority has ended "
                               "(share with them as patient, or with a guardian)")
        end = min(end, birthday) if end is not None else birthday
        file_id = found.file_id
    else:
        file_id = await patients.file_id(patient)
    if relationship == "replacement" and end is None:
        raise InvalidInput("a replacement needs an end date: --until DATE")
    defaults = (await sharing.defaults()).get(relationship, {})
    return file_id, await sharing.terms(relationship, parse_scopes(scopes, defaults)), end


def qr_text(data: str) -> str:
    qr = qrcode.QRCode(border=1)
    qr.add_data(data)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def _scopes_short(scopes: dict[str, str]) -> str:
    """'clinical+ shared+ administrative': + where the grant may append."""
    return " ".join(s + ("+" if a == "append" else "") for s, a in scopes.items())


def _scopes_text(scopes: dict[str, str]) -> str:
    return ", ".join(f"{s} ({a})" for s, a in scopes.items())


def _until_text(until: dt.datetime | None) -> str:
    return until.isoformat() if until else "no end date"


@share_app.command("invite")
def invite(ctx: typer.Context, patient: PatientArgument, as_: AsOption,
           until: UntilOption = None, scopes: ScopesOption = None,
           expires_in_days: Annotated[int, typer.Option(
               "--expires-in-days", min=1, max=30, help="Days the code stays valid.")] = 14,
           no_qr: Annotated[bool, typer.Option("--no-qr", help="Do not draw the QR code.")
                            ] = False,
           name: NameOption = None,
           json_: JsonOption = False, server: ServerOption = None,
           passphrase_stdin: StdinOption = False) -> None:
    """Invite someone without an account: prints a ONE-TIME code (and a QR code) to hand
    over in person. The code never reaches a server. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    if name is not None:
        rt.local(lambda: check_name(name))  # before any key is opened

    async def flow(records: Records, patients: Patients) -> Invited:
        sharing = Sharing(records)
        file_id, chosen, end = await _terms(sharing, patients, patient, as_, scopes, until)
        invited = await sharing.invite(file_id, as_, chosen, end, expires_in_days)
        if name is not None:
            Contacts(records.client.profile, records.identity).name_invitation(
                invited.invitation_id, name)
        return invited

    invited = with_records(rt, flow)

    def human(console: Console) -> None:
        console.print(f"Invitation for a [bold]{invited.relationship}[/] of file "
                      f"{invited.file_id}: {_scopes_text(invited.scopes)}; access "
                      f"{_until_text(invited.valid_until)}.")
        if not no_qr:
            console.print(qr_text(invited.code), markup=False, soft_wrap=True)
        console.print(Panel(f"[bold]{invited.code}[/]\n\nHand this one-time code over in "
                            "person. The invitee types it in `ecrin share accept CODE` (or "
                            "scans the QR code). It works once, until "
                            f"{_until_text(invited.expires_at)}; Écrin keeps no copy.",
                            title="Invitation code", border_style="green"))

    rt.emit(invited.to_json(), human)


@share_app.command("grant")
def grant(ctx: typer.Context, patient: PatientArgument,
          account: Annotated[str, typer.Argument(metavar="ACCOUNT",
                                                 help="The grantee's account id (or its "
                                                 "first characters), verified with "
                                                 "`ecrin verify`.")],
          as_: AsOption, until: UntilOption = None, scopes: ScopesOption = None,
          json_: JsonOption = False, server: ServerOption = None,
          passphrase_stdin: StdinOption = False) -> None:
    """Share with an existing account whose key you verified and pinned (`ecrin verify`):
    the scope keys are re-sealed to it here and signed. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    grantee = rt.local(lambda: TrustStore(rt.profile()).expand_account(account))

    async def flow(records: Records, patients: Patients) -> GrantView:
        sharing = Sharing(records)
        file_id, chosen, end = await _terms(sharing, patients, patient, as_, scopes, until)
        return await sharing.grant(file_id, grantee, as_, chosen, end)

    made = with_records(rt, flow)
    rt.emit(made.to_json(), lambda console: console.print(
        f"Granted: {made.grantee_id} is {made.relationship} of file {made.file_id}: "
        f"{_scopes_text(made.scopes)}; {_until_text(made.valid_until)}.\n"
        f"grant {made.grant_id}\nsafety number: {made.safety_number}"))


@share_app.command("accept")
def accept(ctx: typer.Context,
           code: Annotated[str, typer.Argument(metavar="CODE",
                                               help="The one-time invitation code.")],
           json_: JsonOption = False, server: ServerOption = None,
           passphrase_stdin: StdinOption = False) -> None:
    """Redeem an invitation: the keys are opened with the code here and sealed to your own
    key. Compare the safety number with the practitioner's. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    rt.local(lambda: check_invitation_code(code))  # a typo costs no passphrase nor Argon2id

    async def flow(records: Records, _patients: Patients) -> Accepted:
        return await Sharing(records).accept(code)

    accepted = with_records(rt, flow)
    rt.emit(accepted.to_json(), lambda console: console.print(
        f"Invitation accepted: you are {accepted.relationship} of file {accepted.file_id} "
        f"({_scopes_text(accepted.scopes)}; {_until_text(accepted.valid_until)}).\n"
        f"Invited by account {accepted.inviter_id}, whose key this device now trusts: the "
        "invitation itself named it.\n"
        f"safety number: {accepted.safety_number} (the practitioner's screen shows the same)"))


@share_app.command("list")
def list_(ctx: typer.Context, patient: PatientArgument, json_: JsonOption = False,
          server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """Who holds the file: grants and invitations, who redeemed, safety numbers."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients
                   ) -> tuple[SharingOverview, dict[str, str]]:
        overview = await Sharing(records).overview(await patients.file_id(patient))
        return overview, await people_names(records, patients, overview)

    overview, names = with_records(rt, flow)

    me = rt.profile().settings().account_id

    def human(console: Console) -> None:
        table = Table("grant", "who", "as", "scopes", "status", "until", "key",
                      title=f"Grants of file {short(overview.file_id)}")
        unverified = []
        for g in overview.grants:
            if g.trusted is None and g.status in ("active", "pending"):
                unverified.append(g.grantee_id)
            table.add_row(short(g.grant_id), escape(names.get(g.grantee_id, short(g.grantee_id))),
                          g.relationship, _scopes_short(g.scopes),
                          g.status, g.valid_until.strftime("%d/%m/%Y") if g.valid_until else "",
                          g.trusted or "UNVERIFIED")
        console.print(table)
        for g in overview.grants:
            if g.safety_number and g.grantee_id != me:
                console.print(f"safety number with {names.get(g.grantee_id, g.grantee_id)} "
                              f"({g.relationship}): {g.safety_number}", markup=False)
        for account in unverified:
            console.print(f"[bold red]Account {account} is not verified on this device[/]: "
                          "it receives no new key from it and nothing it signs is accepted. "
                          f"Compare safety numbers in person: `ecrin verify {account}`.")
        if overview.invitations:
            invitations = Table("invitation", "as", "status", "expires", "redeemed by",
                                title="Invitations")
            for i in overview.invitations:
                invitations.add_row(short(i.invitation_id), i.relationship, i.status,
                                    i.expires_at.strftime("%d/%m/%Y") if i.expires_at else "",
                                    escape(names.get(i.redeemed_by or "", short(i.redeemed_by))))
            console.print(invitations)
        console.print("Revoke with `ecrin share revoke GRANT --patient PATIENT` (the first "
                      "characters of each are enough).")

    rt.emit({**overview.to_json(), "names": names}, human)


async def people_names(records: Records, patients: Patients,
                       overview: SharingOverview | None, *, also: Iterable[str] = (),
                       patient: Patient | None = None) -> dict[str, str]:
    """account id -> how to show it: "you", the patient's identity for the file's patient
    grants, a contact name given on this device, or the short id. For the file's grantees
    and redeemers (``overview``, None when this account may not list them) and the
    accounts in ``also``; ``patient``: the file's patient, if already read."""
    contacts = Contacts(records.client.profile, records.identity)
    grants = overview.grants if overview is not None else []
    patient_ids = frozenset(g.grantee_id for g in grants if g.relationship == "patient")
    patient_name = None
    if patient_ids and overview is not None:
        found = patient if patient is not None else await patients.get(overview.file_id)
        patient_name = found.identity.name if found.identity else None
    accounts = set(also) | {g.grantee_id for g in grants}
    if overview is not None:
        accounts |= {i.redeemed_by for i in overview.invitations if i.redeemed_by}
    return {a: contacts.label(a, patient_ids=patient_ids, patient_name=patient_name)
            for a in accounts}


def print_rotations(console: Console, rotations: list[Rotated]) -> None:
    for r in rotations:
        if r.resumed:
            console.print(f"finished the rotation of {r.scope} of file {r.file_id} to key "
                          f"version {r.version} ({r.reason}): {r.rekeyed} record version(s) "
                          "re-keyed" + (f", {r.skipped} skipped" if r.skipped else ""))
        else:
            console.print(f"rotated {r.scope} of file {r.file_id} to key version {r.version} "
                          f"({r.reason}): sealed to {r.members} member(s), {r.rekeyed} record "
                          f"version(s) re-keyed" + (f", {r.skipped} skipped" if r.skipped
                                                    else ""))
        for account in r.skipped_members:
            console.print(
                f"[bold red]SKIPPED account {account}[/]: its key is not verified on this "
                f"device, so the new {r.scope} key was not sealed to it and it has lost access "
                f"to new content. If it should keep access: `ecrin verify {account}` in "
                "person, then `ecrin share grant`.")


@share_app.command("revoke")
def revoke(ctx: typer.Context,
           grant_id: Annotated[str, typer.Argument(
               metavar="GRANT", help="Grant id (or invitation id); with --patient, its first "
               "characters are enough.")],
           patient: Annotated[str | None, typer.Option(
               "--patient", metavar="PATIENT", help="The patient file of the grant (lets "
               "GRANT be a short id, as `share list` shows it).")] = None,
           no_rotate: Annotated[bool, typer.Option(
               "--no-rotate", help="Leave the key rotation to the next `ecrin sync`.")] = False,
           json_: JsonOption = False, server: ServerOption = None,
           passphrase_stdin: StdinOption = False) -> None:
    """Revoke a grant: access stops at once on the servers; then the scope keys are rotated
    and the records re-keyed from this device. Secret: passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(records: Records, patients: Patients
                   ) -> tuple[str, GrantView | None, list[Rotated]]:
        sharing = Sharing(records)
        chosen = grant_id
        if patient is not None:
            known = await sharing.overview(await patients.file_id(patient))
            chosen = resolve(grant_id, [g.grant_id for g in known.grants]
                             + [i.invitation_id for i in known.invitations], "grant")
        return await sharing.revoke(chosen, rotate=not no_rotate)

    what, revoked, rotations = with_records(rt, flow)

    def human(console: Console) -> None:
        if revoked is None:
            console.print(f"Invitation {grant_id} cancelled.")
            return
        console.print(f"Grant {revoked.grant_id} ({revoked.relationship}) is {revoked.status}.")
        print_rotations(console, rotations)

    rt.emit({"revoked": what, "grant": revoked.to_json() if revoked else None,
             "rotations": [r.to_json() for r in rotations]}, human)


@share_app.command("defaults")
def defaults(ctx: typer.Context, json_: JsonOption = False, server: ServerOption = None,
             passphrase_stdin: StdinOption = False) -> None:
    """The scopes each relationship gets by default."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)

    async def flow(client: EcrinClient) -> dict[str, dict[str, str]]:
        body = (await client.transport.request("GET", "/v1/grants/defaults")).json()
        return {str(k): dict(v) for k, v in body.items()}

    found = rt.run(flow)

    def human(console: Console) -> None:
        table = Table("relationship", "scopes")
        for relationship, scopes in found.items():
            table.add_row(relationship, _scopes_text(scopes))
        console.print(table)

    rt.emit(found, human)


def register(app: typer.Typer) -> None:
    app.add_typer(share_app, name="share")
