"""The ``ecrin`` Typer application, its global options and its exit codes."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from ecrin_client.cli.runtime import Runtime

# httpx imports its own command line (click, rich.syntax, pygments: 0.1 s of CPU) unless
# that import fails; it then defines a stub instead. `None` in sys.modules is Python's way
# to make an import fail. The `ecrin` CLI never runs httpx's command line.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None blocks the import (documented Python)

# Every top-level command, the module that defines it and its one-line help. A command's
# module is imported only when that command runs (or its own --help is asked), so that
# `ecrin --help` and a command served by the unlock agent start fast (docs/cli.md).
# tests/client/test_cli_start.py checks these lines against the commands' own help.
COMMANDS: dict[str, tuple[str, str]] = {
    "login": ("accounts", "Sign in on this device and unlock your keys. Secret: the "
              "passphrase."),
    "logout": ("accounts", "End this session, forget its tokens and lock the agent."),
    "whoami": ("accounts", "Who this profile is signed in as, according to the server."),
    "unlock": ("unlock", "Unlock your keys for the next commands (kept by a local agent)."),
    "lock": ("unlock", "Make the agent forget your keys now."),
    "verify": ("security", "Show an account's fingerprint and your safety number; pin it "
               "once confirmed."),
    "account": ("accounts", "Create an account."),
    "sessions": ("accounts", "List and revoke your sessions (devices)."),
    "2fa": ("security", "Second factor (TOTP)."),
    "passphrase": ("security", "Change your passphrase."),
    "recovery": ("security", "The recovery key."),
    "identity": ("security", "Your identity keys (what others verify)."),
    "patient": ("patients", "Patients: create, list, search, show."),
    "record": ("records", "Records of a patient: documents, notes, versions."),
    "share": ("share", "Share a patient file: invitations, grants, revocation."),
    "sync": ("sync", "Rotate the scope keys of revoked or expired grants and re-key the "
             "records (content untouched)."),
    "audit": ("audit", "A patient file's access history (hash-chained, verified here)."),
}


def _register(module_name: str) -> Callable[[typer.Typer], None]:
    module = importlib.import_module(f"ecrin_client.cli.{module_name}")
    attached: dict[str, str] = {"share": "share_app", "sync": "sync_app",
                                "audit": "audit_app"}
    if module_name in attached:
        sub_app = getattr(module, attached[module_name])
        return lambda holder: holder.add_typer(sub_app, name=module_name)
    register: Callable[[typer.Typer], None] = module.register
    return register


class LazyGroup(TyperGroup):
    """The root group: lists every command from :data:`COMMANDS`, imports one on use."""

    _loaded: dict[str, TyperGroup]
    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def _module_group(self, module_name: str) -> TyperGroup:
        loaded = self.__dict__.setdefault("_loaded", {})
        if module_name not in loaded:
            holder = typer.Typer()
            holder.callback()(lambda: None)  # always a group, even with one command
            _register(module_name)(holder)
            group = typer.main.get_command(holder)
            assert isinstance(group, TyperGroup)
            loaded[module_name] = group
        return loaded[module_name]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        module_name, summary = COMMANDS[cmd_name]
        if self._listing:  # the root's --help: the summary, without importing anything
            return typer.core.TyperCommand(name=cmd_name, help=summary)
        return self._module_group(module_name).commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


EXIT_CODES = """\
Exit codes: 0 ok · 1 usage or invalid input · 2 authentication failed (wrong passphrase or \
unknown account, not signed in, session ended) · 3 second factor required · 4 not found or \
conflict · 5 rate limited · 6 server unavailable or server error · 7 integrity failure or \
identity mismatch · 130 interrupted. Environment: ECRIN_SERVER, ECRIN_HOME (profile folder, \
default ~/.ecrin), ECRIN_PASSPHRASE, ECRIN_NEW_PASSPHRASE, ECRIN_RECOVERY_KEY, \
ECRIN_KDF_PROFILE (insecure-test: tests only). See docs/cli.md."""

app = typer.Typer(
    name="ecrin",
    help="Écrin: end-to-end encrypted patient records. Accounts, keys, patients, records.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LazyGroup,
    # Plain click help: Rich's help renderer imports Markdown and syntax highlighting
    # (0.2 s of CPU), more than everything else `ecrin --help` does.
    rich_markup_mode=None,
)


@app.callback()
def _global(ctx: typer.Context,
            server: Annotated[str | None, typer.Option(
                "--server", envvar="ECRIN_SERVER",
                help="Gateway URL, e.g. https://ecrin.example.fr (default: the profile's).")
            ] = None,
            json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")
                             ] = False,
            passphrase_stdin: Annotated[bool, typer.Option(
                "--passphrase-stdin", help="Read secrets from stdin, one per line.")] = False,
            ) -> None:
    ctx.obj = Runtime(server=server, json=json_, passphrase_stdin=passphrase_stdin)


def _tune_collector() -> None:
    """For a short-lived ``ecrin`` process: the imports make some 200,000 objects that live
    as long as the process, and the cyclic collector walks them again at each full
    collection while the rest is imported (about 12 % of a command served by the agent,
    benchmarks/bench_cli.py). Freezing what is loaded so far and collecting the youngest
    generation less often keeps that work away; cycles are still collected."""
    gc.freeze()
    gc.set_threshold(5000, *gc.get_threshold()[1:])


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's usage errors exit 1 (2 means an authentication failure here).

    Without ``argv`` this is the process's own command line (the ``ecrin`` script,
    ``python -m ecrin_client``): the collector is tuned for a short-lived process. Callers
    that pass ``argv`` (the tests, in their own long-lived process) are left alone."""
    if argv is None:
        _tune_collector()
    try:
        code = app(args=argv, prog_name="ecrin", standalone_mode=False)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, EOFError):
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except TyperException as error:  # usage errors (Typer vendors its own click)
        show = getattr(error, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"Error: {error.format_message()}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
