"""Running the `ecrin` command in-process for the CLI tests: one call, its exit code and
output (the fake server is each test module's own)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from click.testing import CliRunner
from ecrin_client.cli import main


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(args: tuple[str, ...] | list[str], env: dict[str, str],
            input: str | None = None) -> Result:
    """``ecrin ARGS`` with exactly ``env`` (the profile, the server, a passphrase...)."""
    with CliRunner().isolation(input=input, env=env) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        return Result(code, out.getvalue().decode(), err.getvalue().decode())
