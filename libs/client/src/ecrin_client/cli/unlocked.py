"""What the commands that decrypt share: the passphrase, the unlocked keys, progress bars."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ecrin_client import agent
from ecrin_client.cli.runtime import Runtime
from ecrin_client.client import EcrinClient
from ecrin_client.patients import Patients
from ecrin_client.records import Records, Unreadable
from ecrin_e2ee import IdentityKeys

if TYPE_CHECKING:
    from rich.progress import Progress

T = TypeVar("T")


class TransferBar:
    """A Rich progress bar on stderr, one task per phase (encrypting, uploading, ...)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: Any = None

    def begin(self, label: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(label, total=max(total, 1))

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


def with_records(rt: Runtime, flow: Callable[[Records, Patients], Awaitable[T]],
                 *, progress: bool = False) -> T:
    """Open the identity, then run ``flow`` on the account's records.

    The keys come from the unlock agent when it holds this account's (no passphrase, no
    Argon2id); else from the passphrase (prompt, ``--passphrase-stdin`` or
    ``ECRIN_PASSPHRASE``), and a passphrase typed at a terminal starts the agent for the
    next commands (docs/cli.md, "The unlock agent").
    """
    held = rt.local(lambda: held_keys(rt))
    passphrase = None if held else rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))
    show = progress and not rt.json and rt.stderr_is_terminal()

    async def go(client: EcrinClient) -> T:
        nonlocal passphrase
        identity = client.held_identity(held.account_id, held.keys) if held else None
        if identity is None:
            if held is not None:  # another account's or outdated keys: forget them
                await asyncio.to_thread(agent.lock, client.profile.home)
            if passphrase is None:
                passphrase = await asyncio.to_thread(
                    rt.secret, "passphrase", "ECRIN_PASSPHRASE")
            identity = await client.unlock(passphrase)
            if _typed_at_terminal(rt):
                await asyncio.to_thread(hand_to_agent, rt, client, identity, None)
        if not show:
            records = Records(client, identity)
            try:
                return await flow(records, Patients(records))
            finally:
                report_unreadable(rt, records.unreadable)
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), TimeRemainingColumn(), console=rt.err,
                       transient=False)
        with bar:
            records = Records(client, identity, progress=TransferBar(bar))
            try:
                return await flow(records, Patients(records))
            finally:
                report_unreadable(rt, records.unreadable)

    return rt.run(go)


def _typed_at_terminal(rt: Runtime) -> bool:
    """Whether the passphrase came from the prompt (a person, not a script)."""
    return (not rt.passphrase_stdin and not os.environ.get("ECRIN_PASSPHRASE")
            and sys.stdin.isatty())


def held_keys(rt: Runtime) -> agent.HeldKeys | None:
    """The keys the profile's agent holds, or None (none running, or the agent disabled)."""
    try:
        return agent.fetch_keys(rt.profile().home)
    except agent.AgentError as exc:
        rt.warn(str(exc))
        return None


def hand_to_agent(rt: Runtime, client: EcrinClient, identity: IdentityKeys,
                  idle: int | None) -> int | None:
    """Start the agent with the unlocked keys. -> idle seconds, or None if it failed (the
    command goes on: the agent only saves time)."""
    settings = client.profile.settings()
    fingerprint = client.profile.pinned(str(identity.account_id)) or ""
    try:
        seconds = idle if idle is not None else agent.idle_seconds()
        agent.start_agent(client.profile.home, account_id=str(identity.account_id),
                          server_url=settings.server_url or client.server_url,
                          fingerprint=fingerprint, keys=identity.to_bytes(), idle=seconds)
    except (agent.AgentError, ValueError, OSError) as exc:
        rt.warn(f"the unlock agent did not start: {exc}")
        return None
    return seconds


def report_unreadable(rt: Runtime, unreadable: list[Unreadable]) -> None:
    """On stderr (JSON output stays clean): each record a listing skipped, who wrote it and
    why. The command still succeeds: one bad record never hides the rest."""
    for item in unreadable:
        version = f" v{item.version}" if item.version else ""
        author = f", written by account {item.author_id}" if item.author_id else ""
        rt.warn(f"record {item.record_id}{version}{author} was skipped: {item.reason}")
