"""Fixtures: a fake gateway + kms, profile folders (one per device), SDK clients on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from ecrin_client import EcrinClient, Profile

from tests.client.fake_server import URL, FakeEcrin

PASSPHRASE = "correct horse battery staple"
NEW_PASSPHRASE = "another long passphrase 2"
EMAIL = "kine@example.fr"


@pytest.fixture(autouse=True)
def insecure_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECRIN_KDF_PROFILE", "insecure-test")
    for name in ("ECRIN_SERVER", "ECRIN_PASSPHRASE", "ECRIN_NEW_PASSPHRASE",
                 "ECRIN_RECOVERY_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> FakeEcrin:
    return FakeEcrin()


@pytest.fixture
def device(tmp_path: Path) -> Callable[[str], Profile]:
    def make(name: str) -> Profile:
        return Profile(tmp_path / name / ".ecrin")

    return make


@pytest.fixture
async def open_client(fake: FakeEcrin) -> AsyncIterator[Callable[[Profile], EcrinClient]]:
    clients: list[EcrinClient] = []

    def make(profile: Profile) -> EcrinClient:
        client = EcrinClient(URL, profile, transport=fake.transport())
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def device_a(device: Callable[[str], Profile]) -> Profile:
    return device("a")


@pytest.fixture
def device_b(device: Callable[[str], Profile]) -> Profile:
    return device("b")
