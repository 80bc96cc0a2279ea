"""Recovery keys and invitation codes: typeable text with a checksum."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import InvalidCode, InvitationCode, RecoveryKey
from ecrin_e2ee.codes import ALPHABET


def _groups(text: str) -> list[str]:
    return text.split("-")


class TestRecoveryKeyText:
    @given(st.binary(min_size=32, max_size=32))
    def test_round_trip(self, raw: bytes) -> None:
        key = RecoveryKey(raw)
        text = key.to_text()
        assert text.startswith("ecrin-rk-")
        assert RecoveryKey.from_text(text) == key
        assert (
            RecoveryKey.from_text(text.upper().replace("-", " ").replace("ECRIN RK ", "ecrin-rk-"))
            == key
        )

    def test_forgiving_reading(self) -> None:
        key = RecoveryKey(bytes(32))
        text = key.to_text().replace("0", "o")
        assert RecoveryKey.from_text(text) == key

    def test_every_single_substitution_is_caught(self) -> None:
        key = RecoveryKey.generate()
        body = key.to_text()[len("ecrin-rk-") :]
        for i, c in enumerate(body):
            if c == "-":
                continue
            for other in ALPHABET:
                if other != c:
                    typo = "ecrin-rk-" + body[:i] + other + body[i + 1 :]
                    with pytest.raises(InvalidCode):
                        RecoveryKey.from_text(typo)

    def test_every_adjacent_transposition_is_caught(self) -> None:
        for _ in range(20):
            body = RecoveryKey.generate().to_text()[len("ecrin-rk-") :].replace("-", "")
            for i in range(len(body) - 1):
                if body[i] != body[i + 1]:
                    swapped = body[:i] + body[i + 1] + body[i] + body[i + 2 :]
                    with pytest.raises(InvalidCode):
                        RecoveryKey.from_text("ecrin-rk-" + swapped)

    @pytest.mark.parametrize(
        "text", ["", "ecrin-rk-", "rk-0000", "ecrin-rk-" + "0" * 64, "ecrin-rk-" + "U" * 65]
    )
    def test_malformed(self, text: str) -> None:
        with pytest.raises(InvalidCode):
            RecoveryKey.from_text(text)

    def test_message_never_echoes_characters(self) -> None:
        text = RecoveryKey.generate().to_text()
        typo = text[:-1] + ("0" if text[-1] != "0" else "1")
        with pytest.raises(InvalidCode) as info:
            RecoveryKey.from_text(typo)
        assert text[len("ecrin-rk-") :][:5] not in str(info.value)


class TestInvitationCodeText:
    def test_shape(self) -> None:
        code = InvitationCode.generate()
        text = code.to_text()
        assert len(code.to_bytes()) * 8 >= 100
        assert [len(g) for g in _groups(text)] == [5] * 6
        # QR alphanumeric mode: digits, uppercase, '-'
        assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-")

    @given(st.binary(min_size=15, max_size=15))
    def test_round_trip(self, raw: bytes) -> None:
        code = InvitationCode(raw)
        assert InvitationCode.from_text(code.to_text().lower()) == code
        assert InvitationCode.from_text(code.to_text().replace("-", "  ")) == code

    def test_random_typos_are_caught(self) -> None:
        rng = random.Random(7)
        for _ in range(300):
            text = InvitationCode.generate().to_text()
            i = rng.choice([k for k, c in enumerate(text) if c != "-"])
            other = rng.choice([c for c in ALPHABET if c != text[i]])
            with pytest.raises(InvalidCode):
                InvitationCode.from_text(text[:i] + other + text[i + 1 :])
