"""`ecrin 2fa`, `ecrin passphrase change`, `ecrin recovery show|restore`, `ecrin identity
change`, `ecrin verify`."""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Annotated

import qrcode
import typer
from rich.console import Console
from rich.panel import Panel

from ecrin_client import pinning
from ecrin_client.cli.runtime import (
    EmailOption,
    JsonOption,
    RecoveryCodeOption,
    Runtime,
    ServerOption,
    StdinOption,
    TotpOption,
    runtime,
)
from ecrin_client.cli.unlock import forget_keys
from ecrin_client.client import EcrinClient
from ecrin_client.errors import EcrinError, IdentityMismatch
from ecrin_client.models import LoginResult, TotpEnrolment, Verification

if TYPE_CHECKING:
    from ecrin_client.patients import Patients
    from ecrin_client.records import Records

totp_app = typer.Typer(help="Second factor (TOTP).", no_args_is_help=True)
passphrase_app = typer.Typer(help="Change your passphrase.", no_args_is_help=True)
recovery_app = typer.Typer(help="The recovery key.", no_args_is_help=True)
identity_app = typer.Typer(help="Your identity keys (what others verify).",
                           no_args_is_help=True)

RECOVERY_EXPLANATION = (
    "Your recovery key (ecrin-rk-...) was shown once, when the account was created. Écrin "
    "keeps no copy of it: the servers hold only a public key derived from it and your keys "
    "wrapped under it, so nobody can show it to you again.\n\n"
    "Keep it on paper, in a safe place away from this computer (a safe, a sealed envelope at "
    "the practice), never in an email or a photo. With it, `ecrin recovery restore` sets a "
    "new passphrase if you forget yours; without it, a forgotten passphrase means your "
    "encrypted data is lost.\n\n"
    "Re-issuing a recovery key is not supported yet: it needs server routes to replace the "
    "recovery wrap and the recovery public key, which the API does not have. If you lost "
    "it, keep your passphrase safe, and ask your administrator.")


def _qr_text(uri: str) -> str:
    qr = qrcode.QRCode(border=1)
    qr.add_data(uri)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def _print_codes(console: Console, codes: list[str]) -> None:
    console.print(Panel("\n".join(codes) + "\n\nOne-time recovery codes: each works once "
                        "instead of a TOTP code. Keep them with your recovery key; they are "
                        "shown only now.", title="Second factor enabled", border_style="green"))


@totp_app.command("enable")
def enable(ctx: typer.Context,
           code: Annotated[str | None, typer.Option(help="The code from your app, if you "
                                                    "already have it.")] = None,
           confirm: Annotated[bool, typer.Option(help="Ask for the code now (--no-confirm: "
                                                 "show the enrolment only; then run `ecrin 2fa "
                                                 "confirm CODE`).")] = True,
           json_: JsonOption = False, server: ServerOption = None) -> None:
    """Enrol a TOTP app: shows the otpauth URI and a QR code, then asks for a code."""
    rt = runtime(ctx, json_=json_, server=server)
    enrolment: TotpEnrolment = rt.run(lambda client: client.enable_totp())
    if not rt.json:
        console = rt.err if confirm else rt.out
        console.print("Scan this QR code with your authenticator app "
                      "(or enter the secret by hand):")
        console.print(_qr_text(enrolment.otpauth_uri), markup=False, soft_wrap=True)
        console.print(f"otpauth URI: {enrolment.otpauth_uri}", markup=False, soft_wrap=True)
        console.print(f"secret: {enrolment.secret}", markup=False)
    if not confirm:
        if rt.json:
            rt.emit({"otpauth_uri": enrolment.otpauth_uri, "secret": enrolment.secret,
                     "confirmed": False}, lambda _console: None)
        return
    typed = code or rt.local(lambda: rt.ask("code from your app"))
    codes: list[str] = rt.run(lambda client: client.confirm_totp(typed))
    rt.emit({"otpauth_uri": enrolment.otpauth_uri, "secret": enrolment.secret,
             "confirmed": True, "recovery_codes": codes},
            lambda console: _print_codes(console, codes))


@totp_app.command("confirm")
def confirm_code(ctx: typer.Context, code: Annotated[str, typer.Argument(metavar="CODE")],
                 json_: JsonOption = False, server: ServerOption = None) -> None:
    """Finish an enrolment started with `ecrin 2fa enable --no-confirm`."""
    rt = runtime(ctx, json_=json_, server=server)
    codes: list[str] = rt.run(lambda client: client.confirm_totp(code))
    rt.emit({"confirmed": True, "recovery_codes": codes},
            lambda console: _print_codes(console, codes))


@passphrase_app.command("change")
def change(ctx: typer.Context, totp: TotpOption = None, json_: JsonOption = False,
           server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """New passphrase; your other sessions end. Secrets: current, then new passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    old = rt.local(lambda: rt.secret("current passphrase", "ECRIN_PASSPHRASE"))
    new = rt.local(lambda: rt.secret("new passphrase", "ECRIN_NEW_PASSPHRASE", confirm=True,
                                     check_length=True))
    forget_keys(rt)
    rt.run(lambda client: client.change_passphrase(old, new, totp_code=totp))
    rt.emit({"changed": True}, lambda console: console.print(
        "Passphrase changed. Your other devices were signed out; sign in there with the new "
        "passphrase."))


@recovery_app.command("show")
def show(ctx: typer.Context, json_: JsonOption = False) -> None:
    """Explain how the recovery key works (it cannot be shown again)."""
    rt = runtime(ctx, json_=json_)
    rt.emit({"shown_once_at_creation": True, "reissue_supported": False,
             "message": RECOVERY_EXPLANATION},
            lambda console: console.print(Panel(RECOVERY_EXPLANATION, title="Recovery key")))


@recovery_app.command("restore")
def restore(ctx: typer.Context, email: EmailOption = None, totp: TotpOption = None,
            recovery_code: RecoveryCodeOption = None,
            device_name: Annotated[str | None, typer.Option("--device-name")] = None,
            json_: JsonOption = False, server: ServerOption = None,
            passphrase_stdin: StdinOption = False) -> None:
    """Forgot your passphrase: set a new one with the recovery key.

    Secrets: the recovery key, then the new passphrase. Every session ends.
    """
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    email = email or rt.profile().settings().email or rt.local(lambda: rt.ask("email"))
    key_text = rt.local(lambda: rt.secret("recovery key", "ECRIN_RECOVERY_KEY"))
    new = rt.local(lambda: rt.secret("new passphrase", "ECRIN_NEW_PASSPHRASE", confirm=True,
                                     check_length=True))
    forget_keys(rt)
    result: LoginResult | None = rt.run(lambda client: client.recover(
        email, key_text, new, totp_code=totp, recovery_code=recovery_code,
        device_name=device_name))

    def human(console: Console) -> None:
        console.print("Passphrase reset with the recovery key; every session was ended.")
        if result is None:
            console.print("Sign in again with `ecrin login` (a fresh second-factor code is "
                          "needed).")
        else:
            console.print(f"Signed in as [bold]{result.account.email}[/]; keys unlocked.")

    rt.emit({"recovered": True, "logged_in": result is not None,
             "fingerprint": result.fingerprint if result else None}, human)


@identity_app.command("change")
def change_identity(ctx: typer.Context, totp: TotpOption = None,
                    recovery_code: RecoveryCodeOption = None, json_: JsonOption = False,
                    server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """Replace your identity keys (e.g. a device that held them was lost).

    Secrets: the passphrase, then the recovery key (the new keys are wrapped under both).
    Everyone who verified you must compare safety numbers with you again; your other
    sessions end.
    """
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    passphrase = rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))
    key_text = rt.local(lambda: rt.secret("recovery key", "ECRIN_RECOVERY_KEY"))
    forget_keys(rt)
    fingerprint: str = rt.run(lambda client: client.change_identity(
        passphrase, key_text, totp_code=totp, recovery_code=recovery_code))
    rt.emit({"changed": True, "fingerprint": fingerprint}, lambda console: console.print(
        f"Identity replaced; new fingerprint: {fingerprint}\nThe change is signed by your "
        "old key. Everyone who verified you will be refused your new key until you compare "
        "safety numbers again in person (`ecrin verify YOUR-ID --replace` on their side). "
        "Your other devices were signed out."))


def register(app: typer.Typer) -> None:
    app.add_typer(totp_app, name="2fa")
    app.add_typer(passphrase_app, name="passphrase")
    app.add_typer(recovery_app, name="recovery")
    app.add_typer(identity_app, name="identity")

    @app.command("verify")
    def verify(ctx: typer.Context, account: Annotated[str, typer.Argument(
                   metavar="ACCOUNT", help="Account id (UUID), or its first characters "
                   "for an account this device knows (pinned, bound by an invitation, "
                   "shared with).")],
               yes: Annotated[bool, typer.Option(
                   "--yes", help="Pin without asking (you compared the numbers).")] = False,
               replace: Annotated[bool, typer.Option(
                   "--replace", help="The account's key changed: show the new one and, once "
                   "you compared safety numbers again, pin it instead.")] = False,
               name: Annotated[str | None, typer.Option(
                   "--name", help="Your name for this person (e.g. 'Dr Martin'), shown "
                   "instead of their account id; kept encrypted on this device only "
                   "(needs your keys: the agent's, or your passphrase).")] = None,
               json_: JsonOption = False, server: ServerOption = None,
               passphrase_stdin: StdinOption = False) -> None:
        """Show an account's fingerprint and your safety number; pin it once confirmed.

        A pinned account whose key later changes is refused loudly (exit 7) until you
        verify it again with --replace.
        """
        rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
        if name is not None:
            from ecrin_client.contacts import check_name

            rt.local(lambda: check_name(name))
        from ecrin_client.trust import TrustStore

        account = rt.local(lambda: TrustStore(rt.profile()).expand_account(account))
        try:
            result: Verification = rt.run_raw(
                lambda client: client.verify_account(account, replacing=replace))
        except IdentityMismatch as error:
            if not rt.json:
                rt.err.print(Panel(f"[bold]{error.message}[/]", title="IDENTITY MISMATCH",
                                   border_style="bold red"))
                raise typer.Exit(error.exit_code) from None
            raise rt.fail(error) from None
        except EcrinError as error:
            raise rt.fail(error) from None
        newly_pinned = False
        if result.replaces is not None:
            if not rt.json:
                vouched = ("The change is signed by the key you verified before."
                           if result.key_change_signed else
                           "NO statement signed by the key you verified vouches for it.")
                rt.err.print(Panel(
                    f"Account {result.account_id} has a NEW key.\n{vouched}\n"
                    f"was:           {result.replaces}\nnow:           {result.fingerprint}"
                    f"\nsafety number: {result.safety_number}",
                    title="KEY CHANGED", border_style="bold yellow"))
            agreed = yes or (not rt.json and sys.stdin.isatty() and typer.confirm(
                "Does the NEW safety number match the one on their screen (compared in "
                "person)?", err=True))
            if agreed:
                replaced = result.replaces
                rt.run(lambda client: _replace_pin(client, result, replaced))
                newly_pinned = True
        elif not result.pinned:
            if not rt.json:
                rt.out.print(f"Account {result.account_id}\nfingerprint:   {result.fingerprint}"
                             f"\nsafety number: {result.safety_number}")
            agreed = yes or (not rt.json and sys.stdin.isatty() and typer.confirm(
                "Does the safety number match the one on their screen (compared in person)?",
                err=True))
            if agreed:
                rt.local(lambda: _pin(rt, result))
                newly_pinned = True

        named = None
        if name is not None and (result.pinned or newly_pinned):
            named = _name_contact(rt, result.account_id, name)

        def human(console: Console) -> None:
            if named:
                console.print(f"Shown as {named} from now on (kept on this device only).",
                              markup=False)
            if result.pinned:
                console.print(f"Account {result.account_id} matches the key you verified.\n"
                              f"fingerprint:   {result.fingerprint}\n"
                              f"safety number: {result.safety_number}")
            elif newly_pinned:
                console.print("Verified and pinned: a later change of this key will be "
                              "refused.")
            else:
                console.print("Not pinned.")

        rt.emit({**result.model_dump(mode="json"), "pinned": result.pinned or newly_pinned,
                 **({"name": named} if named else {})}, human)


def _name_contact(rt: Runtime, account_id: str, name: str) -> str:
    """Seal the name given to a verified account (with this account's keys) on this
    device; -> the name as stored."""
    from ecrin_client.cli.unlocked import with_records
    from ecrin_client.contacts import Contacts, check_name

    async def flow(records: Records, _patients: Patients) -> str:
        Contacts(records.client.profile, records.identity).name_account(account_id, name)
        return check_name(name)

    return with_records(rt, flow)


def _pin(rt: Runtime, result: Verification) -> None:
    pinning.pin(rt.profile(), result.account_id, result.fingerprint)


async def _replace_pin(client: EcrinClient, result: Verification, replaces: str) -> None:
    client.replace_pin(result.account_id, result.fingerprint, replaces)
