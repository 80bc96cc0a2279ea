"""``POST /internal/access-changed`` on the kms: the sharing service (and only it) says a
file's grants changed, and the kms drops its cached access answers about that file (the
route is ``ecrin_platform.access``'s, shared with the records API)."""

from __future__ import annotations

import uuid

from ecrin_platform.access import AccessClient
from ecrin_platform.tokens import Principal
from tests.support.apps import Caller, build_app, running


class TestAccessChanged:
    async def test_only_the_sharing_service_tells_and_the_cache_is_dropped(
            self, database_url_for, internal_keys, issuer):
        app = build_app("kms", database_url_for("kms"), internal_keys)
        file_id = uuid.uuid4()
        body = {"file_ids": [str(file_id)]}
        principal = Principal(str(uuid.uuid4()), "practitioner")
        async with running(app) as client:
            access: AccessClient = app.state.access_client
            forgotten: list[uuid.UUID] = []
            access.forget_file = forgotten.append  # type: ignore[method-assign,assignment]  # spy
            told = await client.post("/internal/access-changed", json=body,
                                     headers=Caller(issuer, "sharing").headers(principal))
            assert told.status_code == 204
            assert forgotten == [file_id]
            for other in ("records-api", "gateway"):
                refused = await client.post("/internal/access-changed", json=body,
                                            headers=Caller(issuer, other).headers(principal))
                assert refused.status_code == 401, other
            empty = await client.post("/internal/access-changed", json={"file_ids": []},
                                      headers=Caller(issuer, "sharing").headers(principal))
            assert empty.status_code == 422
        assert forgotten == [file_id]


async def test_the_kms_says_whether_it_follows_the_feed(database_url_for, internal_keys):
    app = build_app("kms", database_url_for("kms"), internal_keys)
    async with running(app):
        def following() -> float | None:
            return app.state.metrics.registry.get_sample_value(
                "ecrin_access_feed_following", {"service": "kms"})

        feed = app.state.access_client.feed
        assert feed is not None
        assert following() == 0.0  # no question asked yet: no stream
        feed.live = True  # what a stream's "ready" line sets (tests/platform/test_access_feed.py)
        assert following() == 1.0
