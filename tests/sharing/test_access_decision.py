"""The access decision (``/internal/access/{file}/{account}`` and ``/internal/access/batch``):
one statement per ask, the same answer from both routes, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert

from ecrin_platform.db import read_only_engine
from ecrin_platform.tokens import Principal
from sharing.models import Grant, PatientFile, Rotation
from tests.support.apps import Caller

ALL = {"clinical": "append", "shared": "append", "administrative": "append"}


def _timeless(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "valid_for_s"}


class World:
    """Rows written straight into the sharing database (committed: the access routes read
    through a session of their own), and the two routes asked as the records API or kms."""

    def __init__(self, client: httpx.AsyncClient, app: Any, issuer) -> None:
        self.client = client
        self.app = app
        self.issuer = issuer
        self.now = datetime.now(UTC)

    async def file(self, *, state: str = "active", deleted: bool = False,
                   key_versions: dict[str, int] | None = None) -> uuid.UUID:
        file_id = uuid.uuid4()
        async with self.app.state.engine.begin() as conn:
            await conn.execute(insert(PatientFile).values(
                id=file_id, owner_id=uuid.uuid4(), state=state, created_at=self.now,
                updated_at=self.now, deleted_at=self.now if deleted else None,
                key_versions=key_versions))
        return file_id

    async def grant(self, file_id: uuid.UUID, grantee: uuid.UUID, relationship: str,
                    scopes: dict[str, str], *, age_s: int = 0, status: str = "active",
                    valid_from: datetime | None = None,
                    valid_until: datetime | None = None) -> None:
        async with self.app.state.engine.begin() as conn:
            await conn.execute(insert(Grant).values(
                id=uuid.uuid4(), file_id=file_id, grantee_id=grantee, granter_id=grantee,
                relationship=relationship, scopes=scopes, status=status,
                valid_from=valid_from, valid_until=valid_until,
                created_at=self.now - timedelta(seconds=age_s)))

    async def rotation(self, file_id: uuid.UUID, scope: str, *, rotated_version: int | None = None,
                       done: bool = False) -> None:
        async with self.app.state.engine.begin() as conn:
            await conn.execute(insert(Rotation).values(
                id=uuid.uuid4(), file_id=file_id, scope=scope, reason="revoked",
                created_at=self.now, rotated_version=rotated_version,
                done_at=self.now if done else None, done_version=rotated_version if done else None))

    def headers(self, account: uuid.UUID, caller: str) -> dict[str, str]:
        principal = Principal(str(account), "practitioner")
        return {**Caller(self.issuer, caller).headers(principal), "x-ecrin-caller": caller}

    async def single(self, file_id: uuid.UUID, account: uuid.UUID,
                     caller: str = "records-api") -> dict | None:
        response = await self.client.get(f"/internal/access/{file_id}/{account}",
                                         headers=self.headers(account, caller))
        if response.status_code == 404:
            assert response.json()["detail"] == "No such file."
            return None
        assert response.status_code == 200, response.text
        return response.json()

    async def batch(self, file_ids: list[uuid.UUID], account: uuid.UUID,
                    caller: str = "records-api") -> list[dict]:
        response = await self.client.post(
            "/internal/access/batch", headers=self.headers(account, caller),
            json={"account_id": str(account), "file_ids": [str(f) for f in file_ids]})
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def both(self, file_id: uuid.UUID, account: uuid.UUID,
                   caller: str = "records-api") -> dict | None:
        """The single route's answer, checked to be the batch route's for that file."""
        one = await self.single(file_id, account, caller)
        many = await self.batch([file_id], account, caller)
        # ``valid_for_s`` counts down between the two questions
        assert [_timeless(a) for a in many] == ([_timeless(one)] if one is not None else [])
        if one is not None and one["valid_for_s"] is not None:
            assert 0 <= many[0]["valid_for_s"] <= one["valid_for_s"]
        elif one is not None:
            assert many[0]["valid_for_s"] is None
        if one is not None and one["valid_until"] is not None:
            assert one["valid_for_s"] <= (datetime.fromisoformat(one["valid_until"])
                                          - datetime.now(UTC)).total_seconds() + 5
        return one


@pytest.fixture
async def world(service_app, issuer) -> AsyncIterator[World]:
    async with service_app("sharing", rollback=False) as client:
        app = client._transport.app  # type: ignore[attr-defined]  # httpx ASGITransport
        yield World(client, app, issuer)


class TestNewestLiveGrantWins:
    async def test_of_two_live_grants_the_newest_decides(self, world: World):
        file_id, member = await world.file(), uuid.uuid4()
        await world.grant(file_id, member, "secretary", {"administrative": "read"}, age_s=60)
        await world.grant(file_id, member, "care_team", {"clinical": "append"}, age_s=1)
        answer = await world.both(file_id, member)
        assert answer is not None
        assert (answer["relationship"], answer["scopes"]) == ("care_team",
                                                               {"clinical": "append"})

    async def test_a_newer_expired_grant_leaves_the_older_live_one(self, world: World):
        file_id, member = await world.file(), uuid.uuid4()
        until = world.now + timedelta(days=1)
        await world.grant(file_id, member, "secretary", {"administrative": "read"}, age_s=60,
                          valid_until=until)
        await world.grant(file_id, member, "care_team", {"clinical": "append"}, age_s=1,
                          valid_until=world.now - timedelta(seconds=5))
        answer = await world.both(file_id, member)
        assert answer is not None
        assert answer["relationship"] == "secretary"
        assert datetime.fromisoformat(answer["valid_until"]) == until

    async def test_the_answer_lasts_until_the_grant_ends_or_another_starts(self, world):
        """``valid_for_s``: how long the records API and the kms may keep the answer."""
        file_id, member, other = await world.file(), uuid.uuid4(), uuid.uuid4()
        await world.grant(file_id, member, "secretary", {"administrative": "read"}, age_s=60,
                          valid_until=world.now + timedelta(days=1))
        # newer, narrower, and not started yet: when it starts, the answer changes unannounced
        await world.grant(file_id, member, "replacement", {"shared": "read"}, age_s=1,
                          valid_from=world.now + timedelta(hours=1))
        await world.grant(file_id, other, "care_team", {"clinical": "append"})
        answer = await world.both(file_id, member)
        assert answer is not None and answer["relationship"] == "secretary"
        assert answer["valid_for_s"] == pytest.approx(3600, abs=5)
        unending = await world.both(file_id, other)
        assert unending is not None and unending["valid_for_s"] is None

    @pytest.mark.parametrize("terms", [{"valid_until": -5}, {"valid_from": 3600},
                                       {"status": "revoked"}], ids=["expired", "not-yet",
                                                                    "revoked"])
    async def test_a_grant_that_is_not_live_is_no_access(self, world: World, terms):
        file_id, member = await world.file(), uuid.uuid4()
        kwargs: dict[str, Any] = {}
        for key, value in terms.items():
            kwargs[key] = value if key == "status" else world.now + timedelta(seconds=value)
        await world.grant(file_id, member, "care_team", {"clinical": "append"}, **kwargs)
        assert await world.both(file_id, member) is None

    async def test_someone_elses_grant_is_no_access(self, world: World):
        file_id = await world.file()
        await world.grant(file_id, uuid.uuid4(), "owner", ALL)
        assert await world.both(file_id, uuid.uuid4()) is None


class TestFileState:
    async def test_a_deleted_file_is_no_access_even_to_its_owner(self, world: World):
        file_id, owner = await world.file(deleted=True), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        assert await world.both(file_id, owner) is None
        assert await world.both(file_id, owner, "kms") is None

    async def test_a_pending_file_is_only_for_the_kms(self, world: World):
        file_id, owner = await world.file(state="pending"), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        assert await world.both(file_id, owner, "records-api") is None
        answer = await world.both(file_id, owner, "kms")
        assert answer is not None and answer["state"] == "pending"

    async def test_key_versions_are_served(self, world: World):
        file_id, owner = await world.file(key_versions={"clinical": 3}), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        answer = await world.both(file_id, owner)
        assert answer is not None and answer["key_versions"] == {"clinical": 3}

    async def test_an_unknown_file_is_no_access(self, world: World):
        assert await world.both(uuid.uuid4(), uuid.uuid4()) is None


class TestPendingRotations:
    async def test_only_members_who_rotate_see_pending_rotations(self, world: World):
        file_id, owner, care, reader = await world.file(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        await world.grant(file_id, care, "care_team", {"clinical": "append"})
        await world.grant(file_id, reader, "secretary", {"administrative": "read"})
        for scope in ("shared", "clinical", "shared"):
            await world.rotation(file_id, scope)
        for member in (owner, care):
            answer = await world.both(file_id, member)
            assert answer is not None and answer["pending_rotations"] == ["clinical", "shared"]
        answer = await world.both(file_id, reader)
        assert answer is not None and answer["pending_rotations"] == []

    async def test_a_stored_or_done_rotation_is_not_pending(self, world: World):
        file_id, owner = await world.file(), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        await world.rotation(file_id, "clinical", rotated_version=2)
        await world.rotation(file_id, "shared", rotated_version=2, done=True)
        await world.rotation(file_id, "administrative")
        answer = await world.both(file_id, owner)
        assert answer is not None and answer["pending_rotations"] == ["administrative"]

    async def test_another_files_rotation_is_not_this_ones(self, world: World):
        file_id, other, owner = await world.file(), await world.file(), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        await world.grant(other, owner, "owner", ALL)
        await world.rotation(other, "clinical")
        answers = await world.batch([file_id, other], owner)
        assert [a["pending_rotations"] for a in answers] == [[], ["clinical"]]


class TestBatch:
    async def test_answers_in_the_asked_order_leaving_out_the_others(self, world: World):
        owner = uuid.uuid4()
        files = [await world.file() for _ in range(3)]
        for file_id in files[:2]:
            await world.grant(file_id, owner, "owner", ALL, age_s=60)
            await world.grant(file_id, owner, "secretary", {"administrative": "read"})
        answers = await world.batch([files[2], files[1], files[0], files[1]], owner)
        assert [a["file_id"] for a in answers] == [str(files[1]), str(files[0])]
        assert {a["relationship"] for a in answers} == {"secretary"}


class TestOneStatement:
    async def test_a_rotators_ask_is_one_statement(self, world: World):
        file_id, owner = await world.file(), uuid.uuid4()
        await world.grant(file_id, owner, "owner", ALL)
        await world.rotation(file_id, "clinical")
        other = await world.file()
        statements: list[str] = []

        def count(conn, cursor, statement, *args) -> None:
            if statement != "BEGIN":  # SQLite's deferred BEGIN of a reader: no round trip
                statements.append(statement)

        # both routes read through the read-only engine (on SQLite a pool of its own)
        engine = read_only_engine(world.app.state.engine).sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            answer = await world.single(file_id, owner)
            batch = await world.batch([file_id, other], owner)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert answer is not None and answer["pending_rotations"] == ["clinical"]
        assert len(batch) == 1
        assert len(statements) == 2, statements  # one per route
