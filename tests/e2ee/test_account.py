from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    DecryptionError,
    FormatError,
    IdentityKeys,
    KdfParams,
    KeyEncryptionKey,
    RecoveryKey,
    WrappedIdentity,
    create_account,
    derive_account_keys,
    new_salt,
    unwrap_identity,
    wrap_identity,
)


class TestKdfParams:
    def test_default_is_moderate_or_stronger(self) -> None:
        import nacl.pwhash.argon2id as a

        p = KdfParams.moderate()
        assert p.opslimit >= a.OPSLIMIT_MODERATE and p.memlimit >= a.MEMLIMIT_MODERATE

    def test_json_round_trip(self) -> None:
        p = KdfParams.moderate()
        assert KdfParams.from_json(p.to_json()) == p

    @pytest.mark.parametrize(
        "obj",
        [
            {"alg": "argon2i13", "opslimit": 3, "memlimit": 2**28},
            {"alg": "argon2id13", "opslimit": 0, "memlimit": 2**28},
            {"alg": "argon2id13", "opslimit": 3, "memlimit": 10},
            {"alg": "argon2id13", "opslimit": "3", "memlimit": 2**28},
            {"alg": "argon2id13", "opslimit": 3},
        ],
    )
    def test_rejects_bad_params(self, obj: dict[str, object]) -> None:
        with pytest.raises(FormatError):
            KdfParams.from_json(obj)  # type: ignore[arg-type]


class TestDeriveAccountKeys:
    def test_deterministic_and_salt_dependent(self, fast_params: KdfParams) -> None:
        salt = new_salt()
        a = derive_account_keys("pass phrase", salt, fast_params)
        b = derive_account_keys("pass phrase", salt, fast_params)
        c = derive_account_keys("pass phrase", new_salt(), fast_params)
        assert a.kek == b.kek and a.login_public_key == b.login_public_key
        assert a.kek != c.kek and a.login_public_key != c.login_public_key

    def test_login_key_and_kek_are_independent(self, fast_params: KdfParams) -> None:
        keys = derive_account_keys("x", new_salt(), fast_params)
        assert bytes(keys.login_signing_key) != keys.kek.to_bytes()

    def test_unicode_passphrase_is_normalised(self, fast_params: KdfParams) -> None:
        salt = new_salt()
        composed = derive_account_keys("kin\u00e9", salt, fast_params)
        decomposed = derive_account_keys("kine\u0301", salt, fast_params)
        assert composed.kek == decomposed.kek

    def test_rejects_short_salt(self, fast_params: KdfParams) -> None:
        with pytest.raises(ValueError):
            derive_account_keys("x", b"short", fast_params)

    async def test_runs_off_the_event_loop(self, fast_params: KdfParams) -> None:
        keys = await asyncio.to_thread(derive_account_keys, "x", new_salt(), fast_params)
        assert len(keys.login_public_key) == 32


class TestWrappedIdentity:
    def test_round_trip_under_kek_and_recovery(self) -> None:
        keys = IdentityKeys.generate(uuid.uuid4())
        for wrapping in (KeyEncryptionKey.generate(), RecoveryKey.generate()):
            wrapped = WrappedIdentity.from_json(wrap_identity(keys, wrapping).to_json())
            assert unwrap_identity(wrapped, wrapping).to_bytes() == keys.to_bytes()

    def test_wrong_key_or_purpose_fails(self) -> None:
        keys = IdentityKeys.generate(uuid.uuid4())
        kek = KeyEncryptionKey.generate()
        wrapped = wrap_identity(keys, kek)
        with pytest.raises(DecryptionError):
            unwrap_identity(wrapped, KeyEncryptionKey.generate())
        with pytest.raises(DecryptionError):
            unwrap_identity(wrapped, RecoveryKey(kek.to_bytes()))

    @pytest.mark.parametrize("field", ["account_id", "nonce", "ciphertext", "purpose"])
    def test_tamper(self, field: str) -> None:
        keys = IdentityKeys.generate(uuid.uuid4())
        kek = KeyEncryptionKey.generate()
        obj = wrap_identity(keys, kek).to_json()
        if field == "account_id":
            obj[field] = str(uuid.uuid4())
        elif field == "purpose":
            obj[field] = "recovery"
        else:
            raw = bytearray(WrappedIdentity.from_json(obj).__getattribute__(field))
            raw[0] ^= 1
            from ecrin_e2ee._wire import b64e

            obj[field] = b64e(bytes(raw))
        with pytest.raises(DecryptionError):
            unwrap_identity(WrappedIdentity.from_json(obj), kek)

    @settings(max_examples=25, deadline=None)
    @given(st.binary(min_size=64, max_size=64), st.uuids())
    def test_hypothesis_round_trip(self, raw: bytes, account_id: uuid.UUID) -> None:
        keys = IdentityKeys.from_bytes(account_id, raw)
        kek = KeyEncryptionKey.generate()
        back = unwrap_identity(WrappedIdentity.from_json(wrap_identity(keys, kek).to_json()), kek)
        assert back.to_bytes() == raw and back.account_id == account_id


class TestCreateAccount:
    def test_setup_is_consistent(self, fast_params: KdfParams) -> None:
        account_id = uuid.uuid4()
        setup = create_account(account_id, "secret words", fast_params)
        again = derive_account_keys("secret words", setup.salt, setup.params)
        assert again.login_public_key == setup.login_public_key
        assert unwrap_identity(setup.wrapped_by_passphrase, again.kek).to_bytes() == (
            setup.identity_keys.to_bytes()
        )
        recovered = RecoveryKey.from_text(setup.recovery_key.to_text())
        assert unwrap_identity(setup.wrapped_by_recovery, recovered).to_bytes() == (
            setup.identity_keys.to_bytes()
        )
        assert setup.public_identity.account_id == account_id
        assert "secret" not in repr(setup).replace("<secret>", "")


class TestRecoveryLoginKey:
    def test_proves_possession_without_revealing_the_key(self) -> None:
        key = RecoveryKey.generate()
        public = key.login_public_key
        assert public == RecoveryKey.from_text(key.to_text()).login_public_key
        assert public != key.to_bytes() and len(public) == 32
        signature = key.login_signing_key().sign(b"challenge").signature
        from nacl.signing import VerifyKey

        VerifyKey(public).verify(b"challenge", signature)
        # independent of the recovery wrap key
        from ecrin_e2ee.account import _wrapping

        assert _wrapping(key)[1] != bytes(key.login_signing_key())
