"""The CLI starts fast: `ecrin --help` imports no command module, no httpx, pydantic or
libsodium; the root's one-line summaries are the commands' own help."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import typer

# `ecrin_client.cli.app` the module (the package exports the Typer object as `app`)
app_module = importlib.import_module("ecrin_client.cli.app")


def help_text(command: object) -> str:
    """The first paragraph of a command's or group's help, whitespace normalised."""
    text = getattr(command, "help", None) or ""
    return " ".join(text.split("\n\n")[0].split())


class TestLazyRoot:
    def test_help_imports_no_command_module_nor_heavy_library(self):
        code = ("import sys, contextlib, io\n"
                "from ecrin_client.cli import main\n"
                "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
                "    main(['--help'])\n"
                "print(__import__('json').dumps(sorted(sys.modules)))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        loaded = set(json.loads(done.stdout.splitlines()[-1]))
        heavy = {"httpx", "pydantic", "nacl", "ecrin_e2ee", "ecrin_client.client",
                 "ecrin_client.records", "qrcode", "rich.markdown"}
        assert not heavy & loaded, heavy & loaded
        commands = {f"ecrin_client.cli.{m}" for m, _ in app_module.COMMANDS.values()}
        assert not commands & loaded, commands & loaded

    def test_every_summary_is_the_commands_own_help(self):
        group = app_module.LazyGroup(name="ecrin")
        ctx = typer.Context(group)
        for name, (_, summary) in app_module.COMMANDS.items():
            command = group.get_command(ctx, name)
            assert command is not None, name
            assert help_text(command) == summary, name

    def test_the_root_lists_every_command_of_every_module(self):
        group = app_module.LazyGroup(name="ecrin")
        for module in {m for m, _ in app_module.COMMANDS.values()}:
            loaded = group._module_group(module)
            assert set(loaded.commands) <= set(app_module.COMMANDS), module

    def test_an_unknown_command_is_a_usage_error(self):
        group = app_module.LazyGroup(name="ecrin")
        assert group.get_command(typer.Context(group), "no-such-command") is None


def loaded_modules(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                           "print(json.dumps(sorted(sys.modules)))"],
                          capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


class TestAgentServedCommand:
    def test_patient_show_and_list_load_no_rich_nor_unrelated_libraries(self):
        # what `ecrin patient show` imports before it runs (its table, for `patient list`,
        # imports Rich only when there is one to print)
        loaded = loaded_modules("import ecrin_client.cli.app, ecrin_client.cli.patients")
        unrelated = {"rich", "qrcode", "fhir", "email_validator", "ecrin_client.sharing",
                     "ecrin_client.audit", "ecrin_client.cli.share"}
        assert not {m.split(".")[0] for m in loaded} & {"rich", "qrcode", "fhir"}
        assert not unrelated & loaded, unrelated & loaded

    def test_the_collector_is_tuned_for_the_process_only(self):
        code = ("import contextlib, gc, io, sys\n"
                "from ecrin_client.cli import main\n"
                "before = gc.get_threshold()\n"
                "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
                "    main(['--help'])\n"
                "print(gc.get_threshold() == before, gc.get_freeze_count() == 0)\n"
                "sys.argv = ['ecrin', '--help']\n"
                "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
                "    main()\n"
                "print(gc.get_threshold()[0], gc.get_freeze_count() > 0, gc.isenabled())")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        caller, process = done.stdout.splitlines()[-2:]
        assert caller == "True True"  # main(argv): a test's own process is left alone
        assert process == "5000 True True"  # the `ecrin` process: frozen, still collecting
