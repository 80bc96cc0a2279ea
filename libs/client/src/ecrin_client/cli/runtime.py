"""What every command shares: options, the profile, secrets input, output, and errors."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ecrin_client.loop import run as run_loop

if TYPE_CHECKING:  # imported where used: `ecrin --help` should not pay for them
    import httpx
    from rich.console import Console

    from ecrin_client.client import EcrinClient
    from ecrin_client.errors import EcrinError
    from ecrin_client.profile import Profile

T = TypeVar("T")

# Tests replace this to drive the CLI against an httpx.MockTransport.
transport_factory: Callable[[], httpx.AsyncBaseTransport] | None = None

MIN_PASSPHRASE_LENGTH = 12

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ServerOption = Annotated[str | None, typer.Option(
    "--server", envvar="ECRIN_SERVER", help="Gateway URL (default: the profile's).")]
StdinOption = Annotated[bool, typer.Option(
    "--passphrase-stdin", help="Read secrets from stdin, one per line (see docs/cli.md).")]
TotpOption = Annotated[str | None, typer.Option("--totp", help="TOTP code (second factor).")]
RecoveryCodeOption = Annotated[str | None, typer.Option(
    "--recovery-code", help="A one-time recovery code instead of a TOTP code.")]
EmailOption = Annotated[str | None, typer.Option("--email", help="Account email.")]


@dataclass
class Runtime:
    """Options resolved from the global callback and the command itself."""

    server: str | None = None
    json: bool = False
    passphrase_stdin: bool = False
    _stdin_lines: Iterator[str] | None = field(default=None, repr=False)

    @property
    def out(self) -> Console:
        from rich.console import Console

        return Console(highlight=False)

    @property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    def profile(self) -> Profile:
        from ecrin_client.profile import Profile

        return Profile.from_env()

    @staticmethod
    def stderr_is_terminal() -> bool:
        """Whether stderr is a terminal, without Rich (a command served by the agent often
        prints nothing through it; importing it costs start-up time)."""
        return sys.stderr.isatty()

    def spinner(self, label: str) -> contextlib.AbstractContextManager[Any]:
        if self.json or not self.stderr_is_terminal():
            return contextlib.nullcontext()
        return self.err.status(label)

    def warn(self, message: str) -> None:
        """``warning: message`` on stderr (JSON output on stdout stays clean)."""
        from rich.markup import escape

        self.err.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)

    def client(self) -> EcrinClient:
        from ecrin_client.client import EcrinClient

        transport = transport_factory() if transport_factory is not None else None
        return EcrinClient(self.server, self.profile(), transport=transport,
                           kdf_progress=self.spinner)

    # -- secrets ---------------------------------------------------------------------------

    def _stdin_line(self, what: str) -> str:
        from ecrin_client.errors import InvalidInput

        if self._stdin_lines is None:
            self._stdin_lines = iter(sys.stdin.read().splitlines())
        try:
            return next(self._stdin_lines)
        except StopIteration:
            raise InvalidInput(f"--passphrase-stdin: missing line for the {what}") from None

    def secret(self, what: str, env: str, *, confirm: bool = False, check_length: bool = False
               ) -> str:
        """A secret from stdin (--passphrase-stdin), the environment, or a hidden prompt."""
        from ecrin_client.errors import InvalidInput

        if self.passphrase_stdin:
            value = self._stdin_line(what)
        elif os.environ.get(env):
            value = os.environ[env]
        elif sys.stdin.isatty():
            value = typer.prompt(what[:1].upper() + what[1:], hide_input=True,
                                 confirmation_prompt=confirm, err=True)
        else:
            raise InvalidInput(f"no {what}: type it at a terminal, or use --passphrase-stdin "
                               f"or {env}")
        if not value:
            raise InvalidInput(f"empty {what}")
        if check_length and len(value) < MIN_PASSPHRASE_LENGTH:
            raise InvalidInput(f"the passphrase must have at least {MIN_PASSPHRASE_LENGTH} "
                               "characters")
        return value

    def ask(self, what: str) -> str:
        from ecrin_client.errors import InvalidInput

        if not sys.stdin.isatty() or self.json:
            raise InvalidInput(f"no {what} given (pass it as an option)")
        return str(typer.prompt(what[:1].upper() + what[1:], err=True)).strip()

    # -- output ----------------------------------------------------------------------------

    def emit(self, data: Any, human: Callable[[Console], None]) -> None:
        if self.json:
            typer.echo(json.dumps(data, default=str, sort_keys=True))
        else:
            human(self.out)

    def emit_lines(self, data: Any, lines: Callable[[], list[str]]) -> None:
        """As :meth:`emit`, for plain lines: printed without Rich (no markup is read in
        them), so that a short answer does not pay for importing it."""
        if self.json:
            typer.echo(json.dumps(data, default=str, sort_keys=True))
        else:
            for line in lines():
                typer.echo(line)

    def fail(self, error: EcrinError) -> typer.Exit:
        from rich.markup import escape

        if self.json:
            typer.echo(json.dumps(error.to_json(), sort_keys=True))
        else:
            self.err.print(f"[bold red]error:[/] {escape(error.message)}", soft_wrap=True)
        return typer.Exit(error.exit_code)

    def run_raw(self, flow: Callable[[EcrinClient], Awaitable[T]]) -> T:
        """Run one SDK flow on a fresh client; typed errors propagate."""

        async def go() -> T:
            async with self.client() as client:
                return await flow(client)

        return run_loop(go())

    def run(self, flow: Callable[[EcrinClient], Awaitable[T]]) -> T:
        """Run one SDK flow; typed errors become a one-line message and their exit code."""
        from ecrin_client.errors import EcrinError

        try:
            return self.run_raw(flow)
        except EcrinError as error:
            raise self.fail(error) from None

    def local(self, action: Callable[[], T]) -> T:
        from ecrin_client.errors import EcrinError

        try:
            return action()
        except EcrinError as error:
            raise self.fail(error) from None


def runtime(ctx: typer.Context, *, json_: bool = False, server: str | None = None,
            passphrase_stdin: bool = False) -> Runtime:
    """Merge a command's own options into the global ones (either place works)."""
    root = ctx.find_root().obj
    base = root if isinstance(root, Runtime) else Runtime()
    return Runtime(server=server or base.server, json=json_ or base.json,
                   passphrase_stdin=passphrase_stdin or base.passphrase_stdin)


def home_path() -> Path:
    from ecrin_client.profile import Profile

    return Profile.from_env().home
