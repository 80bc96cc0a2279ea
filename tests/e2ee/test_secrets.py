"""No key bytes in repr/str; no secret in exception messages; one opaque decryption error."""

from __future__ import annotations

import uuid

import pytest

from ecrin_e2ee import (
    DecryptionError,
    E2EEError,
    FormatError,
    IdentityKeys,
    IdentityMismatchError,
    InvalidCode,
    InvitationCode,
    KdfParams,
    KeyEncryptionKey,
    RecoveryKey,
    Scope,
    ScopeKey,
    SearchKey,
    create_account,
    derive_account_keys,
    new_salt,
    unwrap_identity,
    wrap_identity,
)
from ecrin_e2ee._wire import b64e


def _renderings(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), b64e(secret), repr(secret), str(list(secret))]


class TestRepr:
    @pytest.mark.parametrize(
        "make",
        [
            KeyEncryptionKey.generate,
            RecoveryKey.generate,
            InvitationCode.generate,
            SearchKey.generate,
            lambda: ScopeKey.generate(uuid.uuid4(), Scope.CLINICAL, 1),
        ],
    )
    def test_secret_keys(self, make: object) -> None:
        key = make()  # type: ignore[operator]
        raw = key.to_bytes()
        text = repr(key) + str(key) + f"{key}" + repr([key])
        assert "<secret>" in text
        for rendering in _renderings(raw):
            assert rendering not in text
        if hasattr(key, "to_text"):
            assert key.to_text() not in text

    def test_identity_and_account_keys(self, fast_params: KdfParams) -> None:
        identity = IdentityKeys.generate(uuid.uuid4())
        text = repr(identity) + str(identity)
        for rendering in _renderings(identity.to_bytes()[:32]) + _renderings(
            identity.to_bytes()[32:]
        ):
            assert rendering not in text
        account = derive_account_keys("pw", new_salt(), fast_params)
        text = repr(account) + str(account)
        assert account.kek.to_bytes().hex() not in text
        setup = create_account(uuid.uuid4(), "pw", fast_params)
        assert setup.recovery_key.to_text() not in repr(setup)


class TestErrors:
    def test_hierarchy(self) -> None:
        for cls in (DecryptionError, IdentityMismatchError, InvalidCode, FormatError):
            assert issubclass(cls, E2EEError) and issubclass(cls, ValueError)

    def test_decryption_error_is_opaque_and_unchained(self) -> None:
        identity = IdentityKeys.generate(uuid.uuid4())
        kek = KeyEncryptionKey.generate()
        wrapped = wrap_identity(identity, kek)
        other = KeyEncryptionKey.generate()
        with pytest.raises(DecryptionError) as info:
            unwrap_identity(wrapped, other)
        assert str(info.value) == "decryption failed"
        assert info.value.__cause__ is None and info.value.__suppress_context__
        for secret in (kek.to_bytes(), other.to_bytes(), identity.to_bytes()):
            for rendering in _renderings(secret):
                assert rendering not in str(info.value)
