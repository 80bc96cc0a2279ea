"""``ecrin_platform.pg_channel`` without a server: what it refuses, and that a publication
never raises (its callers have committed).
(Its listening, notices and a lost connection run against PostgreSQL in
``tests/sharing/test_access_feed.py::TestReplicas``; the gateway's use of it in
``tests/e2e/test_gateway_replicas.py``.)"""

from __future__ import annotations

from ecrin_platform.db import create_engine
from ecrin_platform.pg_channel import MAX_PAYLOAD, PgChannel


async def test_a_payload_too_long_or_a_server_not_reached_is_false_not_raised():
    engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:9/none")
    heard: list[str] = []
    channel = PgChannel(engine, "ecrin_test", on_message=heard.append, on_lost=lambda: None)
    try:
        # 2 bytes each in UTF-8: PostgreSQL would refuse it
        assert await channel.publish(["é" * (MAX_PAYLOAD // 2 + 1)]) is False
        assert await channel.publish([]) is True
        # a server that cannot be reached: logged, False, and nothing raised
        assert await channel.publish(["changed"]) is False
        assert not channel.listening
        await channel.stop()  # never started: nothing to stop
    finally:
        await engine.dispose()
