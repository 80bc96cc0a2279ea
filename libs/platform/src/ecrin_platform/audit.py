"""Append-only, hash-chained audit events: identifiers only, never content.

Each service keeps its own events, in one chain per subject: ``file:<id>`` for what
happened to a patient file (``file:<id>:<scope>`` for what happened in one scope of it,
where the readers differ per scope: the kms and the records-api), ``account:<id>`` for
logins and account changes. A chain is complete on its own, so a patient can be shown and
can verify the whole history of their file, or of a scope they hold, without seeing any
other file's or scope's events: chains are served whole, never filtered per reader.

Event hash = SHA-256 over the canonical JSON of (chain, seq, time, actor, action, target,
outcome, request_id, service, prev_hash); the first event's prev_hash is 64 zeros.

Every audit route answers :meth:`AuditLog.served`: the events, their head (the last event
served) signed with the service's own audit key (``ecrin_e2ee.audit_head``), and that
key's public half, which devices pin (``docs/protocol.md``, audit heads).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    DateTime,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from ecrin_e2ee import AuditSigningKey
from ecrin_platform.observability import metrics_var, request_id_var

GENESIS = "0" * 64
_CHAIN_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:c, 0))")
#: The same lock as a column of another query (bound parameter ``chain``).
CHAIN_LOCK_COLUMN = func.pg_advisory_xact_lock(
    func.hashtextextended(bindparam("chain", type_=String()), 0)).label("chain_locked")
#: A chain's last (seq, hash): (0, GENESIS) for a chain with no event yet.
ChainEnd = tuple[int, str]


class AuditEventColumns:
    """Columns of an audit table; each service declares ``class AuditEvent(Base, this)``."""

    __tablename__ = "audit_events"

    chain: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(16))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def event_hash(event: dict[str, Any]) -> str:
    fields = {k: event[k] for k in ("chain", "seq", "time", "actor", "action", "target",
                                    "outcome", "request_id", "service", "prev_hash")}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _iso(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _row(event: dict[str, Any]) -> dict[str, Any]:
    """A sealed event as the columns of its row."""
    return {**event, "time": datetime.fromisoformat(event["time"])}


def as_dict(row: AuditEventColumns) -> dict[str, Any]:
    return {"chain": row.chain, "seq": row.seq, "time": _iso(row.time), "actor": row.actor,
            "action": row.action, "target": row.target, "outcome": row.outcome,
            "request_id": row.request_id, "service": row.service, "prev_hash": row.prev_hash,
            "hash": row.hash}


def verify_chain(events: Sequence[dict[str, Any]]) -> bool:
    """True when the events form one unbroken chain from its first event."""
    previous = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        if event["seq"] != expected_seq or event["prev_hash"] != previous:
            return False
        if event_hash(event) != event["hash"]:
            return False
        previous = event["hash"]
    return True


def _count_on_commit(session: AsyncSession, actions: list[tuple[str, str]]) -> None:
    """The app's domain counters (observability.Metrics) count these events once their
    transaction commits: a rolled-back append is not an append."""
    metrics = metrics_var.get()
    if metrics is None:
        return  # outside a request and outside the app's lifespan: no app to count in
    pending = session.sync_session.info.setdefault(_PENDING, [])
    pending.append((metrics, actions))


_PENDING = "ecrin_audit_pending"


@sa_event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for metrics, actions in session.info.pop(_PENDING, []):
        metrics.audited(actions)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forgotten(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the outermost transaction ended
        session.info.pop(_PENDING, None)


class AuditLog:
    def __init__(self, model: type[Any], service: str) -> None:
        self.model = model
        self.service = service
        table = model.__table__
        #: Built once: a statement made per call is compiled from its cache key each time.
        self._chain_end = (select(table.c.seq, table.c.hash)
                           .where(table.c.chain == bindparam("chain"))
                           .order_by(table.c.seq.desc()).limit(1))
        self._insert = insert(table)
        self._after_lock: dict[int, CompoundSelect | Select[Any]] = {}
        # The first sealed event follows an event that exists (or starts the chain): an end
        # read from elsewhere, ahead of the chain or of another chain, writes nothing.
        first_seq = bindparam("e0_seq", type_=Integer())
        first_prev = bindparam("e0_prev_hash", type_=String())
        follows = or_(and_(first_seq == 1, first_prev == GENESIS),
                      select(table.c.seq).where(table.c.chain == bindparam("chain"),
                                                table.c.seq == first_seq - 1,
                                                table.c.hash == first_prev).exists())
        #: The chain's lock as a CTE, taken only when the sealed events follow the chain's
        #: end (``first_event_cte`` selects its row from it).
        self.after_lock_cte = select(CHAIN_LOCK_COLUMN).where(follows).cte("chain_lock")
        #: The first sealed event, inserted once the statement holds the lock, and only
        #: when its seq is free (ON CONFLICT DO NOTHING: another append that came after the
        #: end it was sealed on is a row fewer, not a failed statement): RETURNING its seq.
        #: Every other row of the statement (``insert_after_lock``'s next events, the rows
        #: the records API's create writes with its events) is selected from it, so a
        #: refused end or a lost race writes nothing at all.
        self.first_event_cte = (
            pg_insert(table).from_select(self._columns, self._event_row(0)
                                         .select_from(self.after_lock_cte))
            .on_conflict_do_nothing(index_elements=[table.c.chain, table.c.seq])
            .returning(table.c.seq).cte("first_event"))

    @property
    def _columns(self) -> list[str]:
        return [column.key for column in self.model.__table__.columns]

    def _event_row(self, i: int) -> Select[Any]:
        """The columns of sealed event ``i`` as bound parameters (``after_lock_params``)."""
        return select(*(bindparam(f"e{i}_{column.key}", type_=column.type).label(column.key)
                        for column in self.model.__table__.columns))

    async def append(self, session: AsyncSession, *, chain: str, actor: str | uuid.UUID | None,
                     action: str, target: str | uuid.UUID, outcome: str = "ok",
                     when: datetime | None = None) -> dict[str, Any]:
        """Adds one event to ``chain`` in the caller's transaction (so it commits with the
        change it records, or not at all)."""
        (event,) = await self.append_many(session, chain=chain, actor=actor,
                                          events=[(action, str(target))], outcome=outcome,
                                          when=when)
        return event

    @staticmethod
    async def lock(session: AsyncSession, chain: str) -> None:
        """PostgreSQL: takes ``chain``'s lock in the caller's transaction (held until it
        ends), in a statement of its own, so that the next statements read what the
        previous holder committed. (SQLite's writers are serialised by BEGIN IMMEDIATE.)"""
        await session.execute(_CHAIN_LOCK, {"c": chain})

    @property
    def chain_end(self) -> Any:
        """The query of a chain's last (seq, hash), bound parameter ``chain``: for a write
        path that reads it in one of its own statements (``append_many``, ``end``)."""
        return self._chain_end

    @staticmethod
    def end_of(row: Any) -> ChainEnd:
        """The ``ChainEnd`` of a row of :attr:`chain_end` (None: an empty chain)."""
        return (row.seq, row.hash) if row is not None else (0, GENESIS)

    async def append_many(self, session: AsyncSession, *, chain: str,
                          actor: str | uuid.UUID | None, events: Sequence[tuple[str, str]],
                          outcome: str = "ok", when: datetime | None = None,
                          end: ChainEnd | None = None) -> list[dict[str, Any]]:
        """Adds ``(action, target)`` events to ``chain`` in order, in the caller's
        transaction: one lock, one read of the chain's end and one insert, whatever their
        number (a batch of 500 re-keyed headers is 500 events).

        ``end``: the caller already holds the chain's lock (``lock``, on PostgreSQL) and
        read the chain's end (``chain_end``) in a later statement than the one that took
        it, with other reads of its own (the records API's create, the locked way)."""
        if not events:
            return []
        if end is not None:
            seq, prev = end
        else:
            if session.bind is not None and session.bind.dialect.name == "postgresql":
                # FOR UPDATE locks nothing on a new chain, and a waiter would still read the
                # old last row: serialise appends to one chain with a transaction-scoped
                # lock, taken in a statement of its own so that the read below sees the
                # holder's commit. (SQLite writers are already serialised by BEGIN
                # IMMEDIATE.)
                await session.execute(_CHAIN_LOCK, {"c": chain})
            seq, prev = self.end_of(
                (await session.execute(self._chain_end, {"chain": chain})).one_or_none())
        out = self.sealed(chain=chain, actor=actor, events=events, end=(seq, prev),
                          outcome=outcome, when=when)
        # Pending ORM changes first (they may be what these events record), then one
        # INSERT for every event.
        await session.flush()
        await session.execute(self._insert, [_row(event) for event in out])
        _count_on_commit(session, [(action, outcome) for action, _ in events])
        return out

    def sealed(self, *, chain: str, actor: str | uuid.UUID | None,
               events: Sequence[tuple[str, str]], end: ChainEnd, outcome: str = "ok",
               when: datetime | None = None) -> list[dict[str, Any]]:
        """``(action, target)`` events as they are appended after ``end``: numbered, timed
        and hashed, each on the one before."""
        seq, prev = end
        out: list[dict[str, Any]] = []
        request_id = request_id_var.get() or "-"
        for action, target in events:
            seq += 1
            at = when or datetime.now(UTC)
            event: dict[str, Any] = {"chain": chain, "seq": seq, "time": _iso(at),
                                     "actor": str(actor or "anonymous"), "action": action,
                                     "target": str(target), "outcome": outcome,
                                     "request_id": request_id, "service": self.service,
                                     "prev_hash": prev}
            event["hash"] = prev = event_hash(event)
            out.append(event)
        return out

    def insert_after_lock(self, count: int) -> CompoundSelect | Select[Any]:
        """PostgreSQL: a statement that inserts ``count`` sealed events of one chain
        (parameters ``after_lock_params``), taking the chain's lock before it writes a row,
        and returns the seq of each event it wrote (all or none). Built once per count.

        This is how an append whose chain end was read *without* the lock is written
        (``append_unlocked``, the records API's create): the lock makes it wait for a
        locked appender that read the same end; its first event is then inserted only if
        its (chain, seq) is free (``first_event_cte``), and the others only if it was. So
        the events it sealed on a stale end are never written, and losing that race is no
        error (no failed statement, no ERROR in the server's log): no row is returned.

        The check is the primary key's, not a read: every statement of a transaction
        block, or every CTE of one statement, reads one snapshot, taken before it waited
        for the lock, where the rows of the appender it waited for are not. No appender
        writes without the lock, so the unique check does not wait either: the insert
        that took the seq has committed when the lock is free. Every appender takes the
        lock before writing, so one that holds it (and read the end after taking it) never
        meets a row it did not expect; and a statement that writes other rows with its
        events writes them after the first event (``first_event_cte``), so that it never
        holds a row another appender waits for while it waits for the lock. The next
        events are plain inserts: a seq after a free one is free (chains have no gap), and
        were it not, the statement would fail whole rather than write a gapped chain."""
        statement = self._after_lock.get(count)
        if statement is None:
            table = self.model.__table__
            first = self.first_event_cte
            statement = select(first.c.seq)
            if count > 1:
                rows = [self._event_row(i).select_from(first) for i in range(1, count)]
                following = (insert(table).from_select(
                    self._columns, rows[0] if count == 2 else union_all(*rows))
                    .returning(table.c.seq).cte("next_events"))
                statement = union_all(statement, select(following.c.seq))
            self._after_lock[count] = statement
        return statement

    @staticmethod
    def after_lock_params(sealed: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The parameters of ``insert_after_lock(len(sealed))``."""
        params: dict[str, Any] = {"chain": sealed[0]["chain"]}
        for i, event in enumerate(sealed):
            params.update({f"e{i}_{key}": value for key, value in _row(event).items()})
        return params

    async def append_unlocked(self, session: AsyncSession, *, chain: str,
                              actor: str | uuid.UUID | None,
                              events: Sequence[tuple[str, str]], outcome: str = "ok",
                              end: ChainEnd | None = None, statement: Any = None,
                              params: Mapping[str, Any] | None = None
                              ) -> Sequence[Row[Any]] | None:
        """PostgreSQL, on a session outside any transaction block (``autocommit_session``,
        ``read_only_session``): ``append_many`` in two round trips, the chain's end read
        without the lock (or ``end``, read so by the caller in a query of its own), then
        ``insert_after_lock``, which commits by itself. ``statement`` (with its
        ``params``): one that contains ``insert_after_lock(len(events))`` and returns more
        columns beside each seq (a read whose content comes back only with its event
        written). The statement's rows; None when another append came after that end:
        nothing was written, and the caller appends the locked way (``append_many`` in a
        transaction)."""
        if not events:
            return []
        if end is None:
            end = self.end_of(
                (await session.execute(self._chain_end, {"chain": chain})).one_or_none())
        sealed = self.sealed(chain=chain, actor=actor, events=events, end=end,
                             outcome=outcome)
        return await self._written(session, sealed, statement, params)

    async def write_sealed(self, session: AsyncSession, sealed: Sequence[dict[str, Any]],
                           statement: Any = None, params: Mapping[str, Any] | None = None
                           ) -> bool:
        """Runs ``insert_after_lock(len(sealed))`` (or ``statement``, which contains it:
        the records API's create adds its rows to it as data-modifying CTEs, with their
        ``params``) on a session outside any transaction block, where it commits by itself.
        False when nothing was written: another append came after the end the events were
        sealed on (no row returned, no error), the end is no event of this chain (no row
        either), or a unique key of ``statement``'s own rows refused it (an error: a
        concurrent create with the same idempotency key or record id, rare)."""
        return await self._written(session, sealed, statement, params) is not None

    async def _written(self, session: AsyncSession, sealed: Sequence[dict[str, Any]],
                       statement: Any, params: Mapping[str, Any] | None
                       ) -> Sequence[Row[Any]] | None:
        """``write_sealed``, returning the statement's rows (None: nothing written)."""
        try:
            result = await session.execute(
                self.insert_after_lock(len(sealed)) if statement is None else statement,
                {**self.after_lock_params(sealed), **(params or {})})
        except IntegrityError:
            await session.rollback()
            return None
        rows = result.all()
        if len(rows) != len(sealed):  # overtaken, or not on this chain's end
            await session.rollback()
            return None
        _count_on_commit(session, [(event["action"], event["outcome"]) for event in sealed])
        await session.commit()
        return rows

    async def append_chains(self, session: AsyncSession, *, actor: str | uuid.UUID | None,
                            events: Mapping[str, Sequence[tuple[str, str]]],
                            outcome: str | Mapping[str, str] = "ok") -> None:
        """:meth:`append_many` for many chains (``outcome``: one for all, or per chain), in
        the caller's transaction: the chains locked in name order (the order every
        multi-chain append uses, so two never wait on each other), then one read of all
        their ends and one insert, whatever their number (a page of 200 files read at
        once is 200 chains)."""
        chains = sorted(chain for chain, some in events.items() if some)
        if not chains:
            return
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            for chain in chains:
                await session.execute(_CHAIN_LOCK, {"c": chain})
        table = self.model.__table__
        ends = (select(table.c.chain, func.max(table.c.seq).label("seq"))
                .where(table.c.chain.in_(chains)).group_by(table.c.chain).subquery())
        found = await session.execute(
            select(table.c.chain, table.c.seq, table.c.hash).join(
                ends, and_(table.c.chain == ends.c.chain, table.c.seq == ends.c.seq)))
        last = {row.chain: (row.seq, row.hash) for row in found}
        request_id = request_id_var.get() or "-"
        rows: list[dict[str, Any]] = []
        counted: list[tuple[str, str]] = []
        for chain in chains:
            seq, prev = last.get(chain, (0, GENESIS))
            result = outcome if isinstance(outcome, str) else outcome[chain]
            for action, target in events[chain]:
                seq += 1
                at = datetime.now(UTC)
                event: dict[str, Any] = {"chain": chain, "seq": seq, "time": _iso(at),
                                         "actor": str(actor or "anonymous"), "action": action,
                                         "target": str(target), "outcome": result,
                                         "request_id": request_id, "service": self.service,
                                         "prev_hash": prev}
                event["hash"] = prev = event_hash(event)
                rows.append(_row(event))
                counted.append((action, result))
        await session.flush()
        await session.execute(self._insert, rows)
        _count_on_commit(session, counted)

    async def chain(self, session: AsyncSession, chain: str, *, limit: int = 10_000
                    ) -> list[dict[str, Any]]:
        model = self.model
        rows = await session.execute(select(model).where(model.chain == chain)
                                     .order_by(model.seq).limit(limit))
        return [as_dict(r) for r in rows.scalars()]

    async def served(self, session: AsyncSession, chain: str, key: AuditSigningKey, *,
                     limit: int = 10_000) -> dict[str, Any]:
        """What an audit route answers: the chain's events (its first ``limit``), their
        head signed with this service's audit key, and the key's public half."""
        events = await self.chain(session, chain, limit=limit)
        seq, last = (events[-1]["seq"], events[-1]["hash"]) if events else (0, GENESIS)
        signed = key.sign(service=self.service, chain=chain, seq=seq, hash=last)
        return {"service": self.service, "chain": chain, "events": events,
                **signed.to_json(), "audit_key": public_key_text(key)}


def public_key_text(key: AuditSigningKey) -> str:
    """The audit key's public half as devices pin it: base64url, no padding."""
    return base64.urlsafe_b64encode(key.public_key).rstrip(b"=").decode("ascii")


def audit_table_columns() -> Iterable[Any]:
    """Columns for the Alembic migration that creates ``audit_events``."""
    import sqlalchemy as sa

    return [
        sa.Column("chain", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    ]
