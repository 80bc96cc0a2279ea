"""The hash-chained audit log: verifiable, tamper-evident, safe under concurrent appends."""

from __future__ import annotations

import asyncio
import uuid

from ecrin_platform.audit import AuditLog, verify_chain
from ecrin_platform.db import create_engine, create_sessionmaker
from kms.models import AuditEvent


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
