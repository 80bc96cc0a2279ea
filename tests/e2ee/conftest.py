from __future__ import annotations

import uuid

import pytest

from ecrin_e2ee import IdentityKeys, KdfParams, PublicIdentity, Scope, ScopeKey


@pytest.fixture
def fast_params() -> KdfParams:
    return KdfParams.insecure_for_tests()


@pytest.fixture
def alice() -> IdentityKeys:
    return IdentityKeys.generate(uuid.uuid4())


@pytest.fixture
def bob() -> IdentityKeys:
    return IdentityKeys.generate(uuid.uuid4())


@pytest.fixture
def mallory() -> IdentityKeys:
    return IdentityKeys.generate(uuid.uuid4())


@pytest.fixture
def alice_public(alice: IdentityKeys) -> PublicIdentity:
    return alice.public_identity()


@pytest.fixture
def file_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def clinical_key(file_id: uuid.UUID) -> ScopeKey:
    return ScopeKey.generate(file_id, Scope.CLINICAL, 1)
