from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import FormatError, IdentityKeys, SearchKey, normalise_ins, normalise_name


class TestNormaliseName:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Jean-Éloïse  D'Arc", "jean eloise d arc"),
            ("  LÆTITIA  ", "laetitia"),
            ("Cœur", "coeur"),
            ("Strauß", "strauss"),
            ("Ｍａｒｔｉｎ", "martin"),  # fullwidth
            ("Anne–Marie", "anne marie"),  # en dash
            ("le\u0301a", "lea"),
        ],
    )
    def test_examples(self, raw: str, expected: str) -> None:
        assert normalise_name(raw) == expected

    @given(st.text(max_size=30))
    def test_idempotent(self, raw: str) -> None:
        once = normalise_name(raw)
        assert normalise_name(once) == once


class TestTokens:
    def test_equal_for_variants_different_for_names(self) -> None:
        key = SearchKey.generate()
        assert key.name_token("Élodie DUPONT") == key.name_token("elodie dupont")
        assert key.name_token("Dupont") != key.name_token("Dupond")

    def test_keyed(self) -> None:
        assert SearchKey.generate().name_token("x") != SearchKey.generate().name_token("x")

    def test_field_separation(self) -> None:
        key = SearchKey.generate()
        assert key.name_token("1841276451089") != key.ins_token("1841276451089 46")

    def test_owner_key_is_stable(self) -> None:
        owner = IdentityKeys.generate(uuid.uuid4())
        assert SearchKey.for_owner(owner) == SearchKey.for_owner(owner)
        assert SearchKey.for_owner(owner) != SearchKey.for_owner(
            IdentityKeys.generate(uuid.uuid4())
        )

    def test_token_does_not_contain_the_name(self) -> None:
        token = SearchKey.generate().name_token("Martin")
        assert "martin" not in token.lower() and len(token) == 16

    def test_empty_name(self) -> None:
        with pytest.raises(FormatError):
            SearchKey.generate().name_token(" - ")

    def test_birth_date(self) -> None:
        key = SearchKey.generate()
        assert key.birth_date_token("2010-05-04") == key.birth_date_token(" 2010-05-04 ")
        with pytest.raises(FormatError):
            key.birth_date_token("04/05/2010")


class TestIns:
    @pytest.mark.parametrize(
        "raw",
        [
            "1 84 12 76 451 089 46",
            "184127645108946",
            "1.84.12.76.451.089-46",
            "1 84 12 2a 451 089 33",
        ],
    )
    def test_valid(self, raw: str) -> None:
        assert len(normalise_ins(raw)) == 13

    @pytest.mark.parametrize(
        "raw",
        ["1 84 12 76 451 089 47", "18412764510894", "A84127645108946", "", "9 84 12 76 451 089 46"],
    )
    def test_invalid(self, raw: str) -> None:
        with pytest.raises(FormatError):
            normalise_ins(raw)
