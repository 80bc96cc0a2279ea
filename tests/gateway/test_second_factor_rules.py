"""The second factor's rules without a server: each TOTP step once, recovery codes."""

from __future__ import annotations

import asyncio
import uuid

import pyotp
import pytest

from ecrin_e2ee import AtRestKey, AtRestKeyring
from gateway.auth.second_factor import (
    accepted_step,
    find_recovery_code,
    hash_recovery_codes,
    needs_reseal,
    open_totp_secret,
    seal_totp_secret,
)

SECRET = pyotp.random_base32()
NOW = 1_800_000_015.0
STEP = int(NOW // 30)


class TestAcceptedStep:
    def test_a_code_of_the_current_step(self) -> None:
        assert accepted_step(SECRET, pyotp.TOTP(SECRET).at(NOW), None, NOW) == STEP

    @pytest.mark.parametrize("offset", [-1, 1])
    def test_one_step_of_drift(self, offset: int) -> None:
        code = pyotp.TOTP(SECRET).at(NOW + 30 * offset)
        assert accepted_step(SECRET, code, None, NOW) == STEP + offset

    def test_the_same_step_again_is_refused(self) -> None:
        assert accepted_step(SECRET, pyotp.TOTP(SECRET).at(NOW), STEP, NOW) is None

    def test_an_older_step_after_a_newer_one_is_refused(self) -> None:
        older = pyotp.TOTP(SECRET).at(NOW - 30)
        assert accepted_step(SECRET, older, STEP, NOW) is None

    @pytest.mark.parametrize("code", ["", "abcdef", "12345678901"])
    def test_malformed_codes(self, code: str) -> None:
        assert accepted_step(SECRET, code, None, NOW) is None


class TestSealedSecrets:
    def test_sealed_per_account_and_resealed_after_rotation(self) -> None:
        account = uuid.uuid4()
        old = AtRestKey.generate()
        stored = seal_totp_secret(AtRestKeyring(old), account, SECRET)
        ring = AtRestKeyring(AtRestKey.generate(), [old])
        assert open_totp_secret(ring, account, stored) == SECRET
        assert needs_reseal(ring, stored)

    def test_a_plain_seed_from_before_is_read_and_marked_for_sealing(self) -> None:
        ring = AtRestKeyring(AtRestKey.generate())
        assert open_totp_secret(ring, uuid.uuid4(), SECRET) == SECRET
        assert needs_reseal(ring, SECRET)


class TestRecoveryCodes:
    def test_found_once_by_index_and_normalised(self) -> None:
        codes = ["a1b2c3-d4e5f6", "0a0b0c-0d0e0f"]
        stored = asyncio.run(hash_recovery_codes(codes))
        assert asyncio.run(find_recovery_code(stored, " 0A0B0C0D0E0F ")) == 1
        assert asyncio.run(find_recovery_code(stored, "ffffff-ffffff")) is None
