from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecrin_e2ee import padme


class TestPadme:
    @given(st.integers(0, 2**40))
    def test_bounds(self, n: int) -> None:
        p = padme(n)
        assert n <= p <= max(n, int(n * 1.12) + 1)
        assert padme(p) == p

    @given(st.integers(3, 2**40))
    def test_few_significant_bits(self, n: int) -> None:
        p = padme(n)
        e = n.bit_length() - 1
        s = e.bit_length()
        assert p % (1 << (e - s)) == 0

    def test_negative(self) -> None:
        with pytest.raises(ValueError):
            padme(-1)
