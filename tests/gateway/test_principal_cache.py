"""The gateway's short memory of checked sessions: bounded in time and size, forgettable."""

from __future__ import annotations

import time

import pytest

from ecrin_platform.tokens import Principal
from gateway.auth.principal import PrincipalCache
from tests.support.databases import POSTGRES, needs_postgres

ALICE = Principal(account_id="a", role="patient", session_id="s", second_factor=False)


def test_an_entry_lives_for_the_ttl_only():
    cache = PrincipalCache(0.05)
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") == ALICE
    time.sleep(0.06)
    assert cache.get("token") is None


def test_zero_disables_it():
    cache = PrincipalCache(0)
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") is None


def test_clear_forgets_everything_and_size_is_bounded():
    cache = PrincipalCache(10)
    cache.put("token", ALICE, cache.generation)
    cache.clear()
    assert cache.get("token") is None
    for i in range(PrincipalCache.MAX_ENTRIES + 5):
        cache.put(f"t{i}", ALICE, cache.generation)
    assert len(cache._entries) <= PrincipalCache.MAX_ENTRIES


BOB = Principal(account_id="b", role="practitioner", session_id="t", second_factor=True)


def test_forget_drops_the_checks_of_those_accounts_only():
    cache = PrincipalCache(10)
    for token, principal in (("alice-1", ALICE), ("alice-2", ALICE), ("bob", BOB)):
        cache.put(token, principal, cache.generation)
    cache.forget(["a", "nobody"])
    assert cache.get("alice-1") is None and cache.get("alice-2") is None
    assert cache.get("bob") == BOB
    # a token cached again after it expired, or for another account, is forgotten as such
    cache.put("bob", ALICE, cache.generation)
    cache.forget(["b"])
    assert cache.get("bob") == ALICE
    cache.forget(["a"])
    assert cache.get("bob") is None
    assert cache._tokens == {}


def test_a_check_that_overlapped_a_forget_is_not_kept():
    """Whatever account was forgotten meanwhile: the check may have read a session that a
    logout of the same account ended."""
    cache = PrincipalCache(10)
    before = cache.generation
    cache.forget(["someone else"])
    cache.put("token", ALICE, before)
    assert cache.get("token") is None


def test_what_another_replica_says():
    """A notice names an account: its checks go, the others stay; anything else (a replica
    of an older version said ``changed``) empties the cache."""
    import uuid

    from gateway.auth.principal import _heard

    alice = Principal(account_id=str(uuid.uuid4()), role="patient", session_id="s",
                      second_factor=False)
    cache = PrincipalCache(10)
    cache.put("alice", alice, cache.generation)
    cache.put("bob", BOB, cache.generation)
    _heard(cache, alice.account_id.upper())
    assert cache.get("alice") is None and cache.get("bob") == BOB
    _heard(cache, "changed")
    assert cache.get("bob") is None


def test_a_check_that_overlapped_a_clear_is_not_kept():
    """A forwarded request read the session, then a logout cleared the cache, then the
    request would have stored what it read: it is dropped."""
    cache = PrincipalCache(10)
    before = cache.generation
    cache.clear()
    cache.put("token", ALICE, before)
    assert cache.get("token") is None
    cache.put("token", ALICE, cache.generation)
    assert cache.get("token") == ALICE


async def test_no_anonymous_or_refused_write_empties_it(database_url_for, internal_keys):
    """Only a request that changed a session forgets checks, and only its account's (the
    test below): a stranger's flood of writes to the gateway's own routes neither empties
    this replica's cache nor keeps new checks out of it (a forget would refuse the checks
    that overlapped it)."""
    from tests.support.apps import build_app, running

    # The longest cache allowed (4 s): what is checked is what forgets it, not its 0.5 s
    # expiry (a slow first request on a loaded machine outlasted that).
    app = build_app("gateway", database_url_for("gateway"), internal_keys, session_cache_s=4)
    async with running(app, rollback=False) as client:
        cache: PrincipalCache = app.state.principal_cache
        cache.put("token", ALICE, cache.generation)
        generation = cache.generation
        assert (await client.post("/v1/nothere")).status_code == 404
        assert (await client.get("/v1/auth/me")).status_code == 401
        for path, body in (("/v1/auth/logout", {}), ("/v1/auth/refresh", {}),
                           ("/v1/auth/refresh", {"refresh_token": "made-up"}),
                           ("/v1/auth/signup", {}), ("/v1/auth/passphrase", {}),
                           ("/v1/auth/2fa/totp/confirm", {}), ("/v1/%61uth/logout", {})):
            answer = await client.post(path, json=body)
            assert answer.status_code in {401, 422}, (path, answer.status_code)
        assert cache.get("token") == ALICE
        assert cache.generation == generation


async def test_a_login_caches_its_new_session_and_clears_nobody_elses(database_url_for,
                                                                     internal_keys):
    """A challenge or a login changes no existing session: other users' checks stay
    cached; the new session is cached as its first forwarded request would find it; its
    logout forgets that account's checks, here and on the other replicas, and the other
    users' stay."""
    import uuid
    from datetime import UTC, datetime

    from nacl.signing import SigningKey

    from ecrin_platform.db import read_only_session
    from gateway.auth.repository import AuthRepository
    from gateway.auth.schemas import b64decode, b64encode
    from gateway.auth.service import AuthService
    from gateway.models import Account
    from tests.support.apps import build_app, running

    app = build_app("gateway", database_url_for("gateway"), internal_keys, session_cache_s=4)
    key = SigningKey.generate()
    account_id, email = uuid.uuid4(), f"cache-{uuid.uuid4().hex[:8]}@example.fr"
    async with running(app, rollback=False) as client:
        async with app.state.sessionmaker() as session:
            now = datetime.now(UTC)
            session.add(Account(
                id=account_id, email=email, role="practitioner", status="active",
                login_public_key=bytes(key.verify_key), recovery_public_key=bytes(32),
                kdf_salt=bytes(16), kdf_params={"alg": "argon2id13", "opslimit": 3,
                                                "memlimit": 268435456},
                signup_key="k" * 16, signup_digest="0" * 64, created_at=now, updated_at=now))
            await session.commit()
        cache: PrincipalCache = app.state.principal_cache
        cache.put("someone else", ALICE, cache.generation)
        app.state.replicas = told = ToldReplicas()
        challenge = (await client.post("/v1/auth/challenge",
                                       json={"email": email, "action": "login"})).json()
        wrong = await client.post("/v1/auth/login", json={
            "challenge_id": challenge["challenge_id"], "signature": b64encode(bytes(64))})
        assert wrong.status_code == 401
        challenge = (await client.post("/v1/auth/challenge",
                                       json={"email": email, "action": "login"})).json()
        signature = key.sign(b64decode(challenge["challenge"])).signature
        response = await client.post("/v1/auth/login", json={
            "challenge_id": challenge["challenge_id"], "signature": b64encode(signature)})
        assert response.status_code == 200, response.text
        pair = response.json()
        assert cache.get("someone else") == ALICE
        assert cache.get(pair["access_token"]) == Principal(
            account_id=str(account_id), role="practitioner", session_id=pair["session_id"],
            second_factor=False, session_kind="normal")
        # what the database says of that session is what was cached
        async with read_only_session(app.state.engine) as session:
            checked = await AuthService(AuthRepository(session), app.state.auth).principal(
                pair["access_token"])
        assert checked == cache.get(pair["access_token"])
        ended = await client.post("/v1/auth/logout",
                                  headers={"authorization": f"Bearer {pair['access_token']}"})
        assert ended.status_code == 204
        assert cache.get(pair["access_token"]) is None
        assert cache.get("someone else") == ALICE
        # the challenges, the refused and the good login told nobody; the logout, once,
        # and of this account only
        assert told.published == [[str(account_id)]]
        refreshed = await client.post("/v1/auth/refresh",
                                      json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 401  # the session has ended
        assert told.published == [[str(account_id)]]


class ToldReplicas:
    """Stands for ``app.state.replicas`` (a PgChannel on PostgreSQL): what was published."""

    def __init__(self) -> None:
        self.published: list[list[str]] = []

    async def publish(self, payloads: list[str]) -> bool:
        self.published.append(list(payloads))
        return True

    async def stop(self) -> None:
        pass


async def test_no_anonymous_or_refused_write_tells_the_other_replicas(database_url_for,
                                                                      internal_keys):
    """Only a request that ended a session or changed what a check holds tells them: a
    flood of anonymous writes must not keep every replica's cache empty (each notice costs
    a database round trip here, and a session read per request on every replica)."""
    from tests.support.apps import build_app, running

    app = build_app("gateway", database_url_for("gateway"), internal_keys, session_cache_s=4)
    async with running(app, rollback=False) as client:
        app.state.replicas = told = ToldReplicas()
        for path, body in (("/v1/auth/nothere", {}), ("/v1/auth/logout", {}),
                           ("/v1/%61uth/logout", {}), ("/v1/auth/passphrase", {}),
                           ("/v1/auth/refresh", {"refresh_token": "made-up"}),
                           ("/v1/auth/refresh", {}), ("/v1/auth/signup", {}),
                           ("/v1/auth/2fa/totp", {}), ("/v1/accounts/anything", {})):
            answer = await client.post(path, json=body)
            assert answer.status_code in {401, 404, 405, 422}, (path, answer.status_code)
        assert told.published == []


async def test_the_replica_says_whether_it_hears_the_others(database_url_for, internal_keys,
                                                           backend):
    from tests.support.apps import build_app, running

    app = build_app("gateway", database_url_for("gateway"), internal_keys)
    async with running(app, rollback=False):
        heard = app.state.metrics.registry.get_sample_value(
            "ecrin_notices_listening", {"service": "gateway",
                                        "channel": "ecrin_sessions_changed"})
        # on SQLite one process: nothing to hear, no channel
        assert heard == (1.0 if backend.name == "postgres" else None)


class TestTellingTheOtherReplicas:
    """``ProxyDispatch`` awaits ``tell_replicas`` once per write the app answers, before
    the answer leaves (which writes tell is the app's decision: the tests above, and
    ``tests/e2e/test_gateway_replicas.py`` through two real gateways on one database)."""

    @staticmethod
    def dispatch(app_status: int | None, told: list[str], sent: list[str]) -> object:
        from gateway.proxy import ProxyDispatch

        async def app(scope, receive, send):
            if app_status is None:
                raise RuntimeError("no answer")
            await send({"type": "http.response.start", "status": app_status, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def tell(scope) -> None:
            told.append(scope["path"])
            sent.append("told")

        def no_proxy():
            raise AssertionError("not a proxied path")

        return ProxyDispatch(app, proxy=no_proxy, tell_replicas=tell)

    @staticmethod
    async def call(dispatch, method: str, path: str, sent: list[str]) -> None:
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message["type"])

        await dispatch({"type": "http", "method": method, "path": path,
                        "raw_path": path.encode(), "headers": []}, receive, send)

    async def test_once_per_write_before_the_answer_leaves(self):
        told: list[str] = []
        sent: list[str] = []
        dispatch = self.dispatch(204, told, sent)
        await self.call(dispatch, "POST", "/v1/auth/logout", sent)
        assert told == ["/v1/auth/logout"]
        assert sent == ["told", "http.response.start", "http.response.body"]

    async def test_not_for_reads(self):
        told: list[str] = []
        dispatch = self.dispatch(200, told, [])
        for method in ("GET", "HEAD", "OPTIONS"):
            await self.call(dispatch, method, "/v1/auth/sessions", [])
        assert told == []

    async def test_a_write_that_ends_without_an_answer_still_tells(self):
        import pytest

        told: list[str] = []
        dispatch = self.dispatch(None, told, [])
        with pytest.raises(RuntimeError):
            await self.call(dispatch, "POST", "/v1/auth/passphrase", [])
        assert told == ["/v1/auth/passphrase"]


@pytest.mark.postgres
@needs_postgres
@pytest.mark.parametrize("backend", [POSTGRES], indirect=True, ids=["postgres"])
async def test_a_replica_forgets_the_account_another_one_names(database_url_for):
    """Two replicas' channels on one database: a session of Alice's ended through one makes
    the other forget Alice's checks, and only hers (Bob's stay cached there)."""
    import asyncio
    import uuid

    from ecrin_platform.db import create_engine
    from gateway.auth.principal import replicas_channel

    url = database_url_for("gateway")
    engines = [create_engine(url), create_engine(url)]
    here, there = PrincipalCache(60), PrincipalCache(60)
    channels = [replicas_channel(engines[0], here), replicas_channel(engines[1], there)]
    alice = Principal(account_id=str(uuid.uuid4()), role="patient", session_id="s",
                      second_factor=False)
    try:
        for channel in channels:
            assert channel is not None
            await channel.start()
        for _ in range(200):
            if all(c is not None and c.listening for c in channels):
                break
            await asyncio.sleep(0.02)
        there.put("alice", alice, there.generation)
        there.put("bob", BOB, there.generation)
        assert channels[0] is not None
        assert await channels[0].publish([alice.account_id])
        for _ in range(250):
            if there.get("alice") is None:
                break
            await asyncio.sleep(0.02)
        assert there.get("alice") is None
        assert there.get("bob") == BOB
    finally:
        for channel in channels:
            if channel is not None:
                await channel.stop()
        for engine in engines:
            await engine.dispose()
