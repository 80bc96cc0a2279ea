"""``ecrin unlock`` and ``ecrin lock``: the unlock agent (docs/cli.md, "The unlock agent")."""

from __future__ import annotations

from typing import Annotated

import typer

from ecrin_client.cli.runtime import JsonOption, Runtime, ServerOption, StdinOption, runtime

TimeoutOption = Annotated[str | None, typer.Option(
    "--timeout", help="Forget the keys after this idle time: 900, 90s, 15m, 2h "
    "(default 15m, or ECRIN_AGENT_TIMEOUT).")]


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


def forget_keys(rt: Runtime) -> None:
    """Lock the profile's agent, if one runs (logout, passphrase or identity change, another
    account signing in on this profile). Best effort: a failure is shown, not raised."""
    from ecrin_client import agent

    try:
        agent.lock(rt.profile().home)
    except agent.AgentError as exc:
        rt.err.print(f"warning: {exc}", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    @app.command("unlock")
    def unlock(ctx: typer.Context, timeout: TimeoutOption = None, json_: JsonOption = False,
               server: ServerOption = None, passphrase_stdin: StdinOption = False) -> None:
        """Unlock your keys for the next commands (kept by a local agent).

        Secret: the passphrase. The agent forgets them after 15 minutes without use
        (--timeout), on `ecrin lock`, `ecrin logout` and a passphrase change. Commands
        then need no passphrase.
        """
        from ecrin_client import agent
        from ecrin_client.cli.unlocked import hand_to_agent, held_keys
        from ecrin_client.client import EcrinClient
        from ecrin_client.errors import InvalidInput

        rt = runtime(ctx, json_=json_, server=server, passphrase_stdin=passphrase_stdin)
        if agent.agent_disabled():
            raise rt.fail(InvalidInput("the agent is disabled (ECRIN_AGENT=off)"))
        try:
            idle = agent.parse_duration(timeout) if timeout else agent.idle_seconds()
        except ValueError as exc:
            raise rt.fail(InvalidInput(str(exc))) from None
        held = held_keys(rt) if timeout is None else None
        if held is not None:
            async def valid(client: EcrinClient) -> bool:
                return client.held_identity(held.account_id, held.keys) is not None

            if rt.run(valid):
                rt.emit({"unlocked": True, "account_id": held.account_id,
                         "expires_in": held.expires_in, "started": False},
                        lambda console: console.print(
                            f"Already unlocked; the keys are forgotten after "
                            f"{_minutes(held.expires_in)} without use (`ecrin lock` now)."))
                return
        passphrase = rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))

        async def flow(client: EcrinClient) -> tuple[str, int | None]:
            import asyncio

            identity = await client.unlock(passphrase)
            seconds = await asyncio.to_thread(hand_to_agent, rt, client, identity, idle)
            return str(identity.account_id), seconds

        account_id, seconds = rt.run(flow)
        if seconds is None:
            raise typer.Exit(6)
        rt.emit({"unlocked": True, "account_id": account_id, "expires_in": seconds,
                 "started": True},
                lambda console: console.print(
                    f"Unlocked: commands open your keys without the passphrase until "
                    f"{_minutes(seconds)} without use, `ecrin lock` or `ecrin logout`."))

    @app.command("lock")
    def lock(ctx: typer.Context, json_: JsonOption = False) -> None:
        """Make the agent forget your keys now.

        The next command that opens patient data asks the passphrase again."""
        from ecrin_client import agent

        rt = runtime(ctx, json_=json_)
        try:
            was = agent.lock(rt.profile().home)
        except agent.AgentError as exc:
            from ecrin_client.errors import IntegrityError

            raise rt.fail(IntegrityError(str(exc))) from None
        rt.emit({"locked": True, "was_unlocked": was}, lambda console: console.print(
            "Locked: the agent forgot your keys." if was else "Nothing to lock: no agent "
            "holds your keys."))
