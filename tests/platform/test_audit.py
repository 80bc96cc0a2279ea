"""The hash-chained audit log: verifiable, tamper-evident, safe under concurrent appends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecrin_e2ee import AuditHead, AuditSigningKey, SignedAuditHead
from ecrin_e2ee._wire import b64d
from ecrin_platform.audit import AuditLog, verify_chain
from ecrin_platform.db import autocommit_session, create_engine, create_sessionmaker
from kms.app import create_app
from kms.models import AuditEvent
from kms.settings import Settings
from tests.support.databases import POSTGRES, POSTGRES_URL, rolled_back


class TestAuditChain:
    async def test_concurrent_appends_form_one_unbroken_chain(self, database_url_for):
        engine = create_engine(database_url_for("kms"))
        sessions = create_sessionmaker(engine)
        log = AuditLog(AuditEvent, "kms")
        chain = f"file:{uuid.uuid4()}"

        async def append(i: int) -> None:
            async with sessions() as session, session.begin():
                await log.append(session, chain=chain, actor=uuid.uuid4(), action="keys.release",
                                 target=f"t{i}")

        await asyncio.gather(*(append(i) for i in range(12)))
        async with sessions() as session:
            events = await log.chain(session, chain)
        await engine.dispose()
        assert [e["seq"] for e in events] == list(range(1, 13))
        assert verify_chain(events)

    async def test_appends_to_many_chains_at_once_and_one_by_one_form_unbroken_chains(
            self, database_url_for):
        engine = create_engine(database_url_for("kms"))
        sessions = create_sessionmaker(engine)
        log = AuditLog(AuditEvent, "kms")
        chains = [f"file:{uuid.uuid4()}:administrative" for _ in range(5)]

        async def batch(i: int) -> None:  # every chain at once, some events already there
            async with sessions() as session, session.begin():
                await log.append_chains(
                    session, actor="a", events={c: [("record.read", f"b{i}"), ("x", "y")]
                                                for c in chains},
                    outcome={c: "denied" if c == chains[0] else "ok" for c in chains})

        async def single(i: int) -> None:
            async with sessions() as session, session.begin():
                await log.append(session, chain=chains[i % 5], actor="a", action="x",
                                 target=f"s{i}")

        await asyncio.gather(*(batch(i) for i in range(4)), *(single(i) for i in range(10)))
        async with sessions() as session:
            found = {c: await log.chain(session, c) for c in chains}
        await engine.dispose()
        for chain, events in found.items():
            assert [e["seq"] for e in events] == list(range(1, 11)), chain
            assert verify_chain(events)
        assert {e["outcome"] for e in found[chains[0]] if e["target"].startswith("b")} == {
            "denied"}
        assert {e["outcome"] for e in found[chains[1]]} == {"ok"}

    async def test_any_edit_breaks_the_chain(self, database_url_for):
        engine = create_engine(database_url_for("kms"))
        sessions = create_sessionmaker(engine)
        log = AuditLog(AuditEvent, "kms")
        chain = f"file:{uuid.uuid4()}"
        async with sessions() as session, session.begin():
            for i in range(3):
                await log.append(session, chain=chain, actor="a", action="x", target=str(i))
        async with sessions() as session:
            events = await log.chain(session, chain)
        await engine.dispose()
        assert verify_chain(events)
        for field in ("actor", "action", "target", "outcome", "time"):
            edited = [dict(e) for e in events]
            edited[1][field] = "changed"
            assert not verify_chain(edited), field
        assert not verify_chain(events[1:])  # a dropped head
        assert not verify_chain([events[0], events[2]])  # a dropped middle


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECRIN_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
class TestUnlockedAppend:
    """``append_unlocked`` reads the chain's end without the lock and seals its events on
    it: an append that came between must never leave two events with one seq, a fork, or
    a locked appender failing on a row it did not expect."""

    @pytest.fixture
    async def kms_log(self, database_url_for) -> AsyncIterator[tuple[Any, Any, AuditLog]]:
        engine = create_engine(database_url_for("kms"))
        try:
            yield engine, create_sessionmaker(engine), AuditLog(AuditEvent, "kms")
        finally:
            await engine.dispose()

    async def test_unlocked_and_locked_appenders_at_once_form_one_unbroken_chain(
            self, kms_log):
        engine, sessions, log = kms_log
        chain = f"file:{uuid.uuid4()}"

        async def locked(i: int) -> None:
            async with sessions() as session, session.begin():
                await log.append_many(session, chain=chain, actor="a",
                                      events=[("x", f"l{i}"), ("y", f"l{i}")])

        async def unlocked(i: int) -> None:
            async with autocommit_session(engine) as session:
                written = await log.append_unlocked(session, chain=chain, actor="a",
                                                    events=[("r", f"u{i}")])
            if written is None:  # what a caller does: append the locked way
                async with sessions() as session, session.begin():
                    await log.append(session, chain=chain, actor="a", action="r",
                                     target=f"u{i}")

        await asyncio.gather(*(locked(i) for i in range(10)), *(unlocked(i) for i in range(20)))
        async with sessions() as session:
            events = await log.chain(session, chain)
        assert [e["seq"] for e in events] == list(range(1, 41))
        assert verify_chain(events)
        assert sorted(e["target"] for e in events if e["action"] == "r") == sorted(
            f"u{i}" for i in range(20))

    async def test_an_end_that_moved_while_waiting_for_the_lock_writes_nothing(
            self, kms_log):
        engine, sessions, log = kms_log
        chain = f"file:{uuid.uuid4()}"
        async with sessions() as session, session.begin():
            await log.append(session, chain=chain, actor="a", action="x", target="first")
        async with sessions() as holder:
            await holder.begin()
            # holds the lock, its event not committed: the unlocked append reads the old
            # end, then waits for the lock in its INSERT
            await log.append(holder, chain=chain, actor="a", action="x", target="held")
            async with autocommit_session(engine) as session:
                attempt = asyncio.create_task(log.append_unlocked(
                    session, chain=chain, actor="b", events=[("r", "stale")]))
                await asyncio.sleep(0.3)
                assert not attempt.done(), "the INSERT did not wait for the lock"
                await holder.commit()
                assert await attempt is None
        async with sessions() as session:
            events = await log.chain(session, chain)
        assert [e["target"] for e in events] == ["first", "held"]
        assert verify_chain(events)

    async def test_a_lost_race_is_no_failed_statement(self, kms_log, database_url_for):
        """An unlocked append that another append overtook writes nothing and returns None
        without a failed statement: no ERROR in the server's log for an operator to alarm
        on, no rolled-back transaction in its counters."""
        engine, sessions, log = kms_log
        chain = f"file:{uuid.uuid4()}"
        async with sessions() as session, session.begin():
            await log.append(session, chain=chain, actor="a", action="x", target="first")
        await engine.dispose()
        before = await rolled_back(database_url_for("kms"))
        lost = 0

        async def unlocked(session: Any, target: str) -> None:
            nonlocal lost
            if await log.append_unlocked(session, chain=chain, actor="b",
                                         events=[("r", target), ("r2", target)]) is None:
                lost += 1
                async with sessions() as locked, locked.begin():
                    await log.append_many(locked, chain=chain, actor="b",
                                          events=[("r", target), ("r2", target)])

        # two unlocked appenders seal on the end a locked one is about to move: both wait
        # for the lock, then find their first seq taken
        async with sessions() as holder:
            await holder.begin()
            await log.append(holder, chain=chain, actor="a", action="x", target="held")
            async with autocommit_session(engine) as one, autocommit_session(engine) as two:
                racing = [asyncio.create_task(unlocked(s, f"stale{i}"))
                          for i, s in enumerate((one, two))]
                await asyncio.sleep(0.3)
                await holder.commit()
                await asyncio.gather(*racing)
        assert lost == 2

        async def locked(i: int) -> None:
            async with sessions() as session, session.begin():
                await log.append(session, chain=chain, actor="a", action="x", target=f"l{i}")

        async def unlocked_apart(i: int) -> None:
            async with autocommit_session(engine) as session:
                await unlocked(session, f"u{i}")

        await asyncio.gather(*(locked(i) for i in range(8)),
                             *(unlocked_apart(i) for i in range(16)))
        await engine.dispose()
        assert await rolled_back(database_url_for("kms")) == before, "a statement failed"
        assert lost > 2
        async with autocommit_session(engine) as session:
            events = await log.chain(session, chain)
        assert verify_chain(events) and len(events) == 2 + 8 + 2 * 18
        assert sorted(e["target"] for e in events if e["action"] == "r2") == sorted(
            [f"stale{i}" for i in range(2)] + [f"u{i}" for i in range(16)])


class TestSignedHead:
    """Every served chain carries its head, signed with the service's own audit key."""

    async def test_the_served_head_names_the_last_event_and_verifies(self, database_url_for):
        engine = create_engine(database_url_for("kms"))
        sessions = create_sessionmaker(engine)
        log = AuditLog(AuditEvent, "kms")
        key = AuditSigningKey.generate()
        chain = f"file:{uuid.uuid4()}"
        async with sessions() as session:
            empty = await log.served(session, chain, key)
        async with sessions() as session, session.begin():
            for i in range(2):
                await log.append(session, chain=chain, actor="a", action="x", target=str(i))
        async with sessions() as session:
            served = await log.served(session, chain, key)
        await engine.dispose()
        assert b64d(served["audit_key"]) == key.public_key
        for body, seq, last in ((empty, 0, AuditHead.GENESIS),
                                (served, 2, served["events"][-1]["hash"])):
            signed = SignedAuditHead.from_json(body)
            signed.verify(key.public_key)
            assert (signed.head.service, signed.head.chain) == ("kms", chain)
            assert (signed.head.seq, signed.head.hash) == (seq, last)


class TestAuditKeyIsRequired:
    def test_a_service_without_an_audit_key_does_not_start(self, internal_keys):
        settings = Settings(database_url="sqlite+aiosqlite:///:memory:",
                            internal_token_public_key=internal_keys[1].decode())
        with pytest.raises(RuntimeError, match="no audit signing key"):
            create_app(settings)

    def test_an_audit_key_that_is_not_ed25519_is_refused(self, internal_keys):
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        with pytest.raises(ValueError, match="Ed25519"):
            Settings(audit_signing_key=pem.decode()).audit_key()
