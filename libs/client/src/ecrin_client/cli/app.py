"""The ``ecrin`` Typer application, its global options and its exit codes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from ecrin_client.cli import accounts, patients, records, security
from ecrin_client.cli.audit import audit_app
from ecrin_client.cli.runtime import Runtime
from ecrin_client.cli.share import share_app
from ecrin_client.cli.sync import sync_app

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


accounts.register(app)
security.register(app)
patients.register(app)
records.register(app)
app.add_typer(share_app, name="share")
app.add_typer(sync_app, name="sync")
app.add_typer(audit_app, name="audit")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's usage errors exit 1 (2 means an authentication failure here)."""
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
