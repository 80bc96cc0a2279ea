"""What the commands that decrypt share: the passphrase, the unlocked keys, progress bars."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ecrin_client.cli.runtime import Runtime
from ecrin_client.client import EcrinClient
from ecrin_client.patients import Patients
from ecrin_client.records import Records, Unreadable

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
    """Unlock the identity with the passphrase, then run ``flow`` on the account's records.

    Secret: the passphrase (prompt, ``--passphrase-stdin`` or ``ECRIN_PASSPHRASE``).
    """
    passphrase = rt.local(lambda: rt.secret("passphrase", "ECRIN_PASSPHRASE"))
    show = progress and not rt.json and rt.err.is_terminal

    async def go(client: EcrinClient) -> T:
        identity = await client.unlock(passphrase)
        if not show:
            records = Records(client, identity)
            try:
                return await flow(records, Patients(records))
            finally:
                report_unreadable(rt, records.unreadable)
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


def report_unreadable(rt: Runtime, unreadable: list[Unreadable]) -> None:
    """On stderr (JSON output stays clean): each record a listing skipped, who wrote it and
    why. The command still succeeds: one bad record never hides the rest."""
    for item in unreadable:
        version = f" v{item.version}" if item.version else ""
        author = f", written by account {item.author_id}" if item.author_id else ""
        rt.err.print(f"[bold yellow]warning:[/] record {item.record_id}{version}{author} "
                     f"was skipped: {escape(item.reason)}", soft_wrap=True)
