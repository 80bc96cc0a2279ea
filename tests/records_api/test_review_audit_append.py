"""Review of issue 21's unlocked audit appends and one-query read (an attacker's view).

On PostgreSQL a create and a single read seal their events on a chain end read without the
chain's lock and write them with ``AuditLog.insert_after_lock``; every other writer appends
the locked way. Whatever the interleaving of creates, replays, reads, refusals, new
versions, deletes and uploads, of one scope and of another file: no 5xx, one unbroken chain
per scope, every write and every served read there exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from ecrin_platform.audit import GENESIS, verify_chain
from ecrin_platform.db import autocommit_session
from records_api.models import Record
from records_api.records.audit import AUDIT, scope_chain
from records_api.records.schemas import RecordIn
from records_api.records.service import request_digest
from tests.records_api.conftest import Practice, b64, unb64
from tests.support.databases import POSTGRES, POSTGRES_URL, rolled_back, waiting_for_locks


def inline(record) -> str:
    return b64(b"".join(record.chunks))


async def chain_of(practice: Practice, file_id: uuid.UUID, scope: str = "clinical"):
    async with practice.app.state.sessionmaker() as session:
        return await AUDIT.chain(session, scope_chain(file_id, scope))


class TestEveryPathAtOnce:
    async def test_no_fork_gap_5xx_or_missing_event(self, practice: Practice):
        other = Practice(practice.app, practice.client, practice.sharing, practice.caller,
                         practice.owner)  # a second file of the same owner
        existing = [practice.encrypt(b"existing %d" % i) for i in range(8)]
        for record in existing:
            assert (await practice.create(record, content=inline(record))).status_code == 201
        to_version, to_delete = existing[:2], existing[2:4]
        read_only = existing[4:]
        # a colleague who holds only the shared scope: every clinical read is refused
        outsider = practice.actor()
        practice.sharing.grant(practice.file_id, outsider.id, "care_team", shared="read")

        fresh = [practice.encrypt(b"fresh %d" % i) for i in range(12)]
        pending = [practice.encrypt(b"pending %d" % i) for i in range(3)]
        # one Idempotency-Key, four different bodies: one create, three 409
        contested = [practice.encrypt(b"contested %d" % i) for i in range(4)]
        # one record id in two files at once: one create, one 409 record-id-taken
        shared_id = uuid.uuid4()
        twins = [practice.encrypt(b"twin", record_id=shared_id),
                 other.encrypt(b"twin", record_id=shared_id)]
        # one Idempotency-Key reused on another file at once (other record ids)
        reused = [practice.encrypt(b"reused"), other.encrypt(b"reused")]

        async def create(p: Practice, record, key: str | None = None) -> int:
            return (await p.create(record, key=key, content=inline(record))).status_code

        async def create_and_upload(record) -> tuple[int, int]:
            made = await practice.create(record)
            return made.status_code, (await practice.upload(record)).status_code

        async def read(record, actor=None) -> tuple[int, bytes]:
            got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                            headers=practice.headers(actor),
                                            params={"include": "content"})
            content = unb64(got.json().get("content", "")) if got.is_success else b""
            return got.status_code, content

        async def new_version(record) -> int:
            rid = record.header.record_id
            second = practice.encrypt(b"v2 of %s" % str(rid).encode(), record_id=rid,
                                      version=2)
            body = {k: v for k, v in Practice.body(second).items()
                    if k in ("header", "metadata_ciphertext", "content_length")}
            made = await practice.client.post(
                f"/v1/records/{rid}/versions", json={**body, "content": inline(second)},
                headers=practice.headers(**{"If-Match": '"v1"'}))
            return made.status_code

        async def delete(record) -> int:
            return (await practice.client.delete(f"/v1/records/{record.header.record_id}",
                                                 headers=practice.headers(**{"If-Match": '"v1"'}))
                    ).status_code

        results = await asyncio.gather(
            *(create(practice, r) for r in fresh),                            # 0..11
            *(create_and_upload(r) for r in pending),                         # 12..14
            *(read(r) for r in read_only * 3),                                # 15..26
            *(read(r, outsider) for r in read_only),                          # 27..30
            *(new_version(r) for r in to_version),                            # 31..32
            *(delete(r) for r in to_delete),                                  # 33..34
            *(create(practice, r, "contested-key-1") for r in contested),     # 35..38
            create(practice, twins[0]),                                       # 39
            create(other, twins[1]),                                          # 40
            create(practice, reused[0], "reused-key-01"),                     # 41
            create(other, reused[1], "reused-key-01"),                        # 42
        )
        assert results[:12] == [201] * 12
        assert results[12:15] == [(201, 204)] * 3
        assert results[15:27] == [(200, b"".join(r.chunks)) for r in read_only * 3]
        assert results[27:31] == [(404, b"")] * 4
        assert results[31:33] == [201, 201]
        assert results[33:35] == [204, 204]
        assert sorted(results[35:39]) == [201, 409, 409, 409]
        assert sorted(results[39:41]) == [201, 409]
        assert sorted(results[41:43]) == [201, 409]

        events = await chain_of(practice, practice.file_id)
        assert verify_chain(events), "the clinical chain is forked or gapped"
        others = await chain_of(practice, other.file_id)
        assert verify_chain(others), "the other file's chain is forked or gapped"
        twin_made = results[39] == 201
        reused_made = results[41] == 201
        made_here = 8 + 12 + 3 + 1 + twin_made + reused_made
        inline_here = 8 + 12 + 1 + twin_made + reused_made
        assert Counter(e["action"] for e in events) == {
            "record.create": made_here,
            "record.content.write": inline_here + 3 + 2,  # + uploads + inline versions
            "record.content.read": 12,
            "record.read": 4,  # the outsider's, denied
            "record.version.create": 2,
            "record.delete": 2,
        }
        denied = [e for e in events if e["outcome"] == "denied"]
        assert {e["actor"] for e in denied} == {str(outsider.id)} and len(denied) == 4
        assert Counter(e["action"] for e in others) == Counter({
            "record.create": 2 - twin_made - reused_made,
            "record.content.write": 2 - twin_made - reused_made})
        # every write once: one create event per record that exists
        async with practice.app.state.sessionmaker() as session:
            stored = {rid for (rid,) in await session.execute(
                Record.__table__.select().with_only_columns(Record.id).where(
                    Record.file_id.in_([practice.file_id, other.file_id])))}
        created = Counter(e["target"] for e in events + others
                          if e["action"] == "record.create")
        assert set(created.values()) == {1}
        assert {uuid.UUID(t.split(":")[1].split("/")[0]) for t in created} == stored


class TestPrefetchedRead:
    """The one-query read reads the version and its content before the access check."""

    async def test_a_scope_outsider_gets_the_answer_of_a_missing_record(
            self, practice: Practice):
        record = practice.encrypt(b"diagnostic confidentiel")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        outsider = practice.actor()
        practice.sharing.grant(practice.file_id, outsider.id, "patient", shared="append")
        refused = await practice.client.get(
            f"/v1/records/{record.header.record_id}", headers=practice.headers(outsider),
            params={"include": "content"})
        missing = await practice.client.get(
            f"/v1/records/{uuid.uuid4()}", headers=practice.headers(outsider),
            params={"include": "content"})
        assert refused.status_code == missing.status_code == 404
        strip = ("instance", "request_id", "trace_id")
        assert {k: v for k, v in refused.json().items() if k not in strip} == {
            k: v for k, v in missing.json().items() if k not in strip}
        assert set(refused.headers) == set(missing.headers)
        assert inline(record) not in refused.text and "etag" not in refused.headers
        events = await chain_of(practice, practice.file_id)
        assert (events[-1]["actor"], events[-1]["action"], events[-1]["outcome"]) == (
            str(outsider.id), "record.read", "denied")
        assert verify_chain(events)

    async def test_a_revoked_reader_is_refused_even_with_the_row_prefetched(
            self, practice: Practice):
        record = practice.encrypt(b"x" * 1000)
        assert (await practice.create(record, content=inline(record))).status_code == 201
        reader = practice.actor()
        practice.sharing.grant(practice.file_id, reader.id, "care_team", clinical="read")
        url = f"/v1/records/{record.header.record_id}"
        ok = await practice.client.get(url, headers=practice.headers(reader),
                                       params={"include": "content"})
        assert ok.status_code == 200
        practice.sharing.revoke(practice.file_id, reader.id)
        gone = await practice.client.get(url, headers=practice.headers(reader),
                                         params={"include": "content"})
        assert gone.status_code == 404 and "content" not in gone.json()


class TestDigest:
    def _body(self, **fields) -> RecordIn:
        base = {"record_id": uuid.UUID(int=1), "file_id": uuid.UUID(int=2),
                "scope": "clinical", "header": b"\1" * 410, "metadata_ciphertext": b"ab",
                "content_length": 3, "content": b"c"}
        base.update(fields)
        return RecordIn.model_construct(**base)

    def test_every_field_counts_and_no_boundary_is_ambiguous(self):
        base = self._body()
        variants = [
            self._body(metadata_ciphertext=b"a", content=b"bc"),  # a byte moved across
            self._body(content=None),
            self._body(content=b"c\0"),
            self._body(content_length=4),
            self._body(scope="shared"),
            self._body(record_id=uuid.UUID(int=2), file_id=uuid.UUID(int=1)),
            self._body(header=b"\1" * 409 + b"\2"),
        ]
        digests = {request_digest(v) for v in variants}
        assert request_digest(base) not in digests and len(digests) == len(variants)
        assert request_digest(self._body()) == request_digest(base)


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECRIN_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
class TestSuppliedEnd:
    """``AuditLog.append_unlocked(end=...)`` trusts the caller's end. The chain's primary key
    refuses an end *behind* the chain's (a stale read), never one *ahead* of it or of another
    chain: the one-query read computes its chain's name in SQL (``concat('file:', file_id,
    ':', scope)``) and the event's in Python (``scope_chain``), and any divergence between
    the two would write a gapped chain without an error."""

    async def test_an_end_ahead_of_the_chain_writes_nothing(self, practice: Practice):
        record = practice.encrypt(b"x")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        chain = scope_chain(practice.file_id, "clinical")
        before = await chain_of(practice, practice.file_id)
        async with autocommit_session(practice.app.state.engine) as session:
            written = await AUDIT.append_unlocked(
                session, chain=chain, actor=practice.owner.id,
                events=[("record.read", "record:x")], end=(len(before) + 3, GENESIS))
        after = await chain_of(practice, practice.file_id)
        assert written is None and after == before, "a gapped chain was written"



class TestFailsClosed:
    """A read whose event cannot be written is not served, whichever way the append fails."""

    @pytest.mark.parametrize("how", ["refused-then-locked-fails", "unlocked-fails"])
    async def test_no_event_no_content(self, practice: Practice, monkeypatch, how: str):
        from sqlalchemy.exc import OperationalError

        from records_api.records import deps

        record = practice.encrypt(b"secret note")
        assert (await practice.create(record, content=inline(record))).status_code == 201
        before = await chain_of(practice, practice.file_id)

        async def refused(*args, **kwargs):
            return None  # as when another append came between

        async def broken(*args, **kwargs):
            raise OperationalError("INSERT", {}, ConnectionResetError("cut"))

        if how == "unlocked-fails":
            monkeypatch.setattr(AUDIT, "append_unlocked", broken)
        else:
            monkeypatch.setattr(AUDIT, "append_unlocked", refused)
        monkeypatch.setattr(deps, "audit_apart", broken)
        got = await practice.client.get(f"/v1/records/{record.header.record_id}",
                                        headers=practice.headers(),
                                        params={"include": "content"})
        assert got.status_code >= 500 and inline(record) not in got.text
        assert await chain_of(practice, practice.file_id) == before


class TestDigestUpgrade:
    """A create retried across the deploy of f6a581c (old replica wrote the key with the JSON
    digest, the retry reaches a new one): a replay of the very same body."""

    async def test_a_retry_straddling_the_upgrade_is_replayed(self, practice: Practice):
        import hashlib
        import json

        from sqlalchemy import update

        from records_api.models import IdempotencyKey

        record = practice.encrypt(b"created just before the deploy")
        payload = Practice.body(record, content=inline(record))
        assert (await practice.create(record, key="straddling-key-1",
                                      content=inline(record))).status_code == 201
        legacy = hashlib.sha256(json.dumps(
            RecordIn.model_validate(payload).model_dump(mode="json"), sort_keys=True,
            separators=(",", ":")).encode()).hexdigest()
        async with practice.app.state.sessionmaker() as session, session.begin():
            await session.execute(update(IdempotencyKey).where(
                IdempotencyKey.key == "straddling-key-1").values(request_digest=legacy))
        again = await practice.create(record, key="straddling-key-1", content=inline(record))
        assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECRIN_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
class TestUnlockedCreateMeetsAnUncommittedRow:
    """The unlocked create's own rows (record id, Idempotency-Key) may meet a row another
    transaction has written but not committed: the statement waits for it (holding only its
    chain's lock, which that transaction does not want), then answers as the locked way would,
    never a 5xx; nothing of it is written when refused."""

    @pytest.mark.parametrize("ending", ["commit", "rollback"])
    @pytest.mark.parametrize("clash", ["record-id", "idempotency-key"])
    async def test_waits_then_answers(self, practice: Practice, ending: str, clash: str):
        from datetime import UTC, datetime

        from records_api.models import IdempotencyKey

        record = practice.encrypt(b"racing")
        rid, key = record.header.record_id, "uncommitted-key-1"
        at = datetime.now(UTC)
        async with practice.app.state.sessionmaker() as other:
            await other.begin()
            if clash == "record-id":
                other.add(Record(id=rid, file_id=uuid.uuid4(), scope="clinical", created_at=at,
                                 updated_at=at, current_version=0, state="pending",
                                 created_by=practice.owner.id))
            else:
                other.add(IdempotencyKey(account_id=practice.owner.id, key=key,
                                         request_digest="0" * 64, record_id=uuid.uuid4(),
                                         status=201, response={}, created_at=at))
            await other.flush()
            attempt = asyncio.create_task(practice.create(record, key=key,
                                                          content=inline(record)))
            await asyncio.sleep(0.5)
            assert not attempt.done(), "the create did not wait for the uncommitted row"
            # it holds its chain's lock while it waits: another scope's create goes through
            bystander = practice.encrypt(b"bystander", scope="shared")
            assert (await asyncio.wait_for(practice.create(bystander, content=inline(
                bystander)), 10)).status_code == 201
            await (other.commit() if ending == "commit" else other.rollback())
            answer = await asyncio.wait_for(attempt, 10)
        expected = 201 if ending == "rollback" else 409
        assert answer.status_code == expected, answer.text
        events = await chain_of(practice, practice.file_id)
        assert verify_chain(events)
        made = [e for e in events if e["action"] == "record.create"]
        assert len(made) == (1 if expected == 201 else 0)


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="needs ECRIN_TEST_POSTGRES_URL")
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
class TestOvertakenCreate:
    """An unlocked create whose chain end another append moved writes nothing, and no
    statement of it fails (no ERROR with the statement in PostgreSQL's log, no rolled-back
    transaction): it is then made the locked way."""

    async def test_no_failed_statement(self, practice: Practice, database_url_for,
                                       monkeypatch):
        first = practice.encrypt(b"first")
        assert (await practice.create(first, content=inline(first))).status_code == 201
        engine, url = practice.app.state.engine, database_url_for("records-api")
        written: list[bool] = []
        write_sealed = AUDIT.write_sealed

        async def spied(*args, **kwargs) -> bool:
            written.append(await write_sealed(*args, **kwargs))
            return written[-1]

        monkeypatch.setattr(AUDIT, "write_sealed", spied)
        await engine.dispose()
        before = await rolled_back(url)
        records = [practice.encrypt(b"overtaken %d" % i) for i in range(2)]
        async with practice.app.state.sessionmaker() as holder:
            await holder.begin()
            # a locked append holds the chain's lock: both creates read the end it is about
            # to move, then wait for the lock in their one statement
            await AUDIT.append(holder, chain=scope_chain(practice.file_id, "clinical"),
                               actor=practice.owner.id, action="record.read",
                               target="record:held")
            attempts = [asyncio.create_task(practice.create(r, content=inline(r)))
                        for r in records]
            await waiting_for_locks(url, 2)  # both read the end, both wait: not a sleep
            assert not any(attempt.done() for attempt in attempts)
            await holder.commit()
            answers = await asyncio.gather(*attempts)
        assert [answer.status_code for answer in answers] == [201, 201]
        assert written == [False, False]  # both overtaken: made the locked way
        await engine.dispose()
        assert await rolled_back(url) == before, "a statement failed"
        events = await chain_of(practice, practice.file_id)
        assert verify_chain(events)
        assert [e["action"] for e in events].count("record.create") == 3
