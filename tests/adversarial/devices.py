"""What the trust tests share: a practitioner's device behind the malicious server, a way
to run a scenario, and what the device sealed keys to."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from ecrin_client import Records

from ecrin_e2ee import IdentityKeys
from tests.adversarial.malicious import MaliciousServer, Rewrite
from tests.e2e.records_support import Practitioner


@contextlib.asynccontextmanager
async def device(who: Practitioner, keys: IdentityKeys, rewrite: Rewrite | None
                 ) -> AsyncIterator[tuple[Records, MaliciousServer]]:
    """A fresh session on ``who``'s own device (its profile: pins, bindings, versions seen)
    whose answers go through ``rewrite``."""
    server = MaliciousServer(rewrite)
    async with who.client(server) as client:
        yield Records(client, keys), server


def run(scenario: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(scenario)


def sealed_to(bodies: list[Any]) -> set[str]:
    """Every member id the device sealed a keyring entry to, in the bodies it sent."""
    return {str(e["member_id"]) for body in bodies for e in body.get("entries", [])}
