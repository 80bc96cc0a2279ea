"""`ecrin account create`, `login`, `logout`, `whoami`, `sessions list|revoke`."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Column, Table

from ecrin_client import ids
from ecrin_client.checks import check_email
from ecrin_client.cli.runtime import (
    EmailOption,
    JsonOption,
    RecoveryCodeOption,
    ServerOption,
    StdinOption,
    TotpOption,
    runtime,
)
from ecrin_client.cli.unlock import forget_keys
from ecrin_client.client import ROLES, EcrinClient
from ecrin_client.errors import EcrinError, InvalidInput, SecondFactorRequired
from ecrin_client.models import LoginResult, SessionInfo, SignupResult

account_app = typer.Typer(help="Create an account.", no_args_is_help=True)
sessions_app = typer.Typer(help="List and revoke your sessions (devices).", no_args_is_help=True)

DeviceOption = Annotated[str | None, typer.Option(
    "--device-name", help="Name of this device in your session list.")]


def _device(name: str | None) -> str:
    return name or f"ecrin CLI on {socket.gethostname()}"


def _login_json(result: LoginResult) -> dict[str, object]:
    return {"account": result.account.model_dump(mode="json"), "session_id": result.session_id,
            "second_factor_verified": result.second_factor_verified,
            "fingerprint": result.fingerprint}


def _print_login(console: Console, result: LoginResult) -> None:
    console.print(f"Signed in as [bold]{result.account.email}[/] ({result.account.role}). "
                  "`ecrin unlock` keeps your keys open for the next commands.")
    console.print(f"Your fingerprint: {result.fingerprint}")
    if not result.account.second_factor_enabled and result.account.role == "practitioner":
        console.print("[yellow]No second factor yet: `ecrin 2fa enable` adds one (a server "
                      "that requires it for practitioners refuses patient data until "
                      "then).[/]")


@account_app.command("create")
def create(ctx: typer.Context, email: EmailOption = None,
           role: Annotated[str, typer.Option(help="practitioner | staff | patient | "
                                             "representative")] = "practitioner",
           login: Annotated[bool, typer.Option(help="Sign in right after.")] = True,
           device_name: DeviceOption = None, json_: JsonOption = False,
           server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
    """Create an account; shows the recovery key ONCE. Secret: the new passphrase."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    if role not in ROLES:
        raise rt.fail(InvalidInput(f"role must be one of {', '.join(ROLES)}"))
    email = email or rt.local(lambda: rt.ask("email"))
    rt.local(lambda: check_email(email))  # before the passphrase and Argon2id
    passphrase = rt.local(lambda: rt.secret("new passphrase", "ECRIN_PASSPHRASE", confirm=True,
                                            check_length=True))

    forget_keys(rt)  # the profile changes account

    async def flow(client: EcrinClient) -> tuple[SignupResult, str, LoginResult | None]:
        account, recovery_text = await client.signup(email, passphrase, role)
        signed_in = None
        if login:
            signed_in = await client.login(email, passphrase, device_name=_device(device_name))
        return account, recovery_text, signed_in

    account, recovery_text, signed_in = rt.run(flow)

    def human(console: Console) -> None:
        console.print(f"Account [bold]{account.email}[/] created ({account.role}); "
                      f"id {account.account_id}")
        console.print("\nYour RECOVERY KEY:\n")
        console.print(f"    {recovery_text}\n", style="bold", markup=False, soft_wrap=True)
        console.print(Panel(
            "This is your RECOVERY KEY. Write it down on paper now and keep it somewhere safe "
            "(not on this computer). It is shown only this once: Écrin stores it nowhere and "
            "cannot show it again. Without it, a forgotten passphrase means your encrypted "
            "data is lost.", title="Recovery key", border_style="red"))
        if signed_in is not None:
            _print_login(console, signed_in)

    rt.emit({"account": account.model_dump(mode="json"), "recovery_key": recovery_text,
             "login": _login_json(signed_in) if signed_in else None}, human)


@sessions_app.command("list")
def sessions_list(ctx: typer.Context, json_: JsonOption = False,
                  server: ServerOption = None) -> None:
    """Your sessions: one per signed-in device."""
    rt = runtime(ctx, json_=json_, server=server)
    sessions: list[SessionInfo] = rt.run(lambda client: client.sessions())

    def when(moment: datetime | None) -> str:
        return moment.astimezone().strftime("%d/%m/%Y %H:%M") if moment else ""

    def human(console: Console) -> None:
        table = Table("id", "device", Column("created", no_wrap=True),
                      Column("last used", no_wrap=True), "")
        for s in sessions:
            table.add_row(ids.short(s.id), s.device_name or "", when(s.created_at),
                          when(s.last_used_at), "this device" if s.current else "")
        console.print(table)
        console.print("Revoke one with `ecrin sessions revoke ID` (the first characters of "
                      "the id are enough).")

    rt.emit([s.model_dump(mode="json") for s in sessions], human)


@sessions_app.command("revoke")
def sessions_revoke(ctx: typer.Context, session_id: Annotated[str, typer.Argument(
        metavar="ID", help="Session id, or its first characters (`ecrin sessions list`).")],
                    totp: TotpOption = None, recovery_code: RecoveryCodeOption = None,
                    json_: JsonOption = False, server: ServerOption = None,
                    passphrase_stdin: StdinOption = False) -> None:
    """End a session at once (its access token stops working too). Another device's
    session takes the passphrase (and the second factor): a stolen token cannot end them."""
    rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
    # A short id is resolved among this account's sessions (as git resolves a commit's)
    # before the passphrase is asked: whether it is this device's session decides that.
    session_id = rt.local(lambda: ids.expand(
        session_id, lambda: [s.id for s in rt.run(lambda client: client.sessions())],
        "session"))
    tokens = rt.profile().tokens()
    passphrase = None
    if tokens is None or tokens.session_id != session_id.lower():
        passphrase = rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))
    rt.run(lambda client: client.revoke_session(session_id, passphrase, totp_code=totp,
                                                recovery_code=recovery_code))
    rt.emit({"revoked": session_id},
            lambda console: console.print(f"Session {session_id} revoked."))


def register(app: typer.Typer) -> None:
    app.add_typer(account_app, name="account")
    app.add_typer(sessions_app, name="sessions")

    @app.command("login")
    def login(ctx: typer.Context, email: EmailOption = None, totp: TotpOption = None,
              recovery_code: RecoveryCodeOption = None, device_name: DeviceOption = None,
              json_: JsonOption = False, server: ServerOption = None,
              passphrase_stdin: StdinOption = False) -> None:
        """Sign in on this device and unlock your keys. Secret: the passphrase."""
        rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
        email = email or rt.profile().settings().email or rt.local(lambda: rt.ask("email"))
        passphrase = rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))
        forget_keys(rt)  # keys the agent holds may be another account's

        def attempt(code: str | None, recovery: str | None) -> LoginResult:
            return rt.run_raw(lambda client: client.login(
                email, passphrase, totp_code=code, recovery_code=recovery,
                device_name=_device(device_name)))

        try:
            try:
                result = attempt(totp, recovery_code)
            except SecondFactorRequired:
                # The passphrase was right: ask for the code interactively, once.
                if totp or recovery_code or rt.json or not _interactive():
                    raise
                result = attempt(rt.ask("TOTP code"), None)
        except EcrinError as error:
            raise rt.fail(error) from None
        rt.emit(_login_json(result), lambda console: _print_login(console, result))

    @app.command("logout")
    def logout(ctx: typer.Context, json_: JsonOption = False,
               server: ServerOption = None) -> None:
        """End this session, forget its tokens and lock the agent."""
        rt = runtime(ctx, json_=json_, server=server)
        forget_keys(rt)
        rt.run(lambda client: client.logout())
        rt.emit({"logged_out": True}, lambda console: console.print("Signed out."))

    @app.command("whoami")
    def whoami(ctx: typer.Context, json_: JsonOption = False,
               server: ServerOption = None) -> None:
        """Who this profile is signed in as, according to the server."""
        rt = runtime(ctx, json_=json_, server=server)
        me = rt.run(lambda client: client.whoami())
        settings = rt.profile().settings()
        fingerprint = rt.profile().pinned(me.account.id)

        def human(console: Console) -> None:
            console.print(f"[bold]{me.account.email}[/] ({me.account.role}), "
                          f"account {me.account.id}")
            console.print(f"server {settings.server_url or rt.server}; session {me.session_id}")
            console.print("second factor: " + (
                "enabled" + (", verified in this session" if me.second_factor_verified else "")
                if me.account.second_factor_enabled else "not enabled"))
            if fingerprint:
                console.print(f"fingerprint: {fingerprint}")

        rt.emit({**me.model_dump(mode="json"), "fingerprint": fingerprint}, human)


def _interactive() -> bool:
    import sys

    return sys.stdin.isatty()
