"""PADME padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files", 2019).

A length ``L`` is rounded up so that only its ``floor(log2(floor(log2 L))) + 1`` most
significant bits may be non-zero. The overhead is at most about 12 %, and a padded length
leaks ``O(log log L)`` bits about ``L``.
"""

from __future__ import annotations

__all__ = ["padme"]


def padme(length: int) -> int:
    """Return the PADME-padded size for ``length`` (``padme(0) == 0``, ``padme(L) >= L``)."""
    if length < 0:
        raise ValueError("length must be non-negative")
    if length <= 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 e) + 1
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask
