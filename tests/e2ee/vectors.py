"""Known-answer vectors for Écrin's own formats, produced through the deterministic seams.

Regenerate (only when a format version changes on purpose)::

    uv run python -m tests.e2ee.vectors

``tests/e2ee/test_vectors.py`` checks that regenerating reproduces the committed files byte
for byte, and that each vector opens through the public API.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.hashlib

from ecrin_e2ee import (
    AuditSigningKey,
    GrantTerms,
    IdentityKeys,
    KdfParams,
    KeyChange,
    Permission,
    RecoveryKey,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    _seams,
    create_invitation,
    derive_account_keys,
    encrypt_record,
    grant_scope_keys,
    local_seal,
    normalise_ins,
    normalise_name,
    padme,
    redeem_invitation,
    rekey_record_header,
    wrap_identity,
)
from ecrin_e2ee._wire import b64e
from ecrin_e2ee.local_seal import local_key

DATA = Path(__file__).parent / "data"
FIXED_NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
FILE_ID = uuid.UUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
ALICE = uuid.UUID("a11ce000-0000-4000-8000-000000000001")  # practitioner (author, granter)
BOB = uuid.UUID("b0b00000-0000-4000-8000-000000000002")  # replacement (member)
RECORD_ID = uuid.UUID("5ec0d000-0000-4000-8000-000000000003")


class SeededRandom:
    """``BLAKE2b-512(key=seed, counter(8))`` blocks: reproducible, never used in production."""

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode()
        self._counter = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            out += nacl.hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._seed, digest_size=64
            ).digest()
            self._counter += 1
        return out[:size]


@contextlib.contextmanager
def deterministic(seed: str, now: datetime = FIXED_NOW) -> Iterator[None]:
    saved = (_seams._random_bytes, _seams._clock)
    _seams._random_bytes = SeededRandom(seed)
    _seams._clock = lambda: now
    try:
        yield
    finally:
        _seams._random_bytes, _seams._clock = saved


def content_rule(n: int) -> bytes:
    """Vector content: byte i is ``i % 251``."""
    return bytes(i % 251 for i in range(n))


def _identities() -> tuple[IdentityKeys, IdentityKeys]:
    with deterministic("identities"):
        return IdentityKeys.generate(ALICE), IdentityKeys.generate(BOB)


def kdf_vectors() -> dict[str, Any]:
    params = KdfParams.insecure_for_tests()
    cases = []
    for passphrase, salt_seed in [("correct horse battery staple", "s1"), ("Kiné ésthète ①", "s2")]:
        salt = SeededRandom(salt_seed)(16)
        keys = derive_account_keys(passphrase, salt, params)
        cases.append(
            {
                "passphrase": passphrase,
                "salt": b64e(salt),
                "params": params.to_json(),
                "login_public_key": b64e(keys.login_public_key),
                "kek": b64e(keys.kek.to_bytes()),
            }
        )
    return {"description": "Argon2id master secret, BLAKE2b subkeys", "cases": cases}


def identity_vectors() -> dict[str, Any]:
    alice, bob = _identities()
    pa, pb = alice.public_identity(), bob.public_identity()
    return {
        "description": "identity keys x25519(32)||ed25519 seed(32); self-signed public identity",
        "cases": [
            {
                "identity_keys": b64e(k.to_bytes()),
                "public_identity": p.to_json(),
                "fingerprint": p.fingerprint().hex(),
            }
            for k, p in [(alice, pa), (bob, pb)]
        ],
        "safety_number": pa.safety_number(pb),
    }


def recovery_vectors() -> dict[str, Any]:
    with deterministic("recovery"):
        keys = [RecoveryKey.generate() for _ in range(3)]
    keys.append(RecoveryKey(bytes(32)))
    keys.append(RecoveryKey(b"\xff" * 32))
    return {
        "cases": [
            {
                "key": b64e(k.to_bytes()),
                "text": k.to_text(),
                "login_public_key": b64e(k.login_public_key),
            }
            for k in keys
        ]
    }


def wrapped_identity_vectors() -> dict[str, Any]:
    alice, _ = _identities()
    with deterministic("wrapped-identity"):
        salt = _seams.random_bytes(16)
        kek = derive_account_keys("passphrase of alice", salt, KdfParams.insecure_for_tests()).kek
        recovery = RecoveryKey.generate()
        by_kek = wrap_identity(alice, kek)
        by_recovery = wrap_identity(alice, recovery)
    return {
        "identity_keys": b64e(alice.to_bytes()),
        "kek": b64e(kek.to_bytes()),
        "recovery_key": recovery.to_text(),
        "wrapped_by_passphrase": by_kek.to_json(),
        "wrapped_by_recovery": by_recovery.to_json(),
    }


def keyring_vectors() -> dict[str, Any]:
    alice, bob = _identities()
    with deterministic("keyring"):
        scope_key = ScopeKey.generate(FILE_ID, Scope.CLINICAL, 3)
        terms = GrantTerms(
            Relationship.REPLACEMENT,
            frozenset({Permission.READ, Permission.APPEND}),
            valid_from=datetime(2026, 2, 1, tzinfo=UTC),
            valid_until=datetime(2026, 4, 1, tzinfo=UTC),
        )
        (entry,) = grant_scope_keys([scope_key], bob.public_identity(), terms, granter=alice)
    return {
        "granter_identity": alice.public_identity().to_json(),
        "member_identity_keys": b64e(bob.to_bytes()),
        "member_id": str(BOB),
        "scope_key": b64e(scope_key.to_bytes()),
        "open_at": FIXED_NOW.isoformat(),
        "entry": entry.to_json(),
        "signed_bytes": b64e(entry.signed_bytes()),
    }


def record_vectors() -> dict[str, Any]:
    alice, bob = _identities()
    cases = []
    for n in (0, 300, 65_636):
        with deterministic(f"record-{n}"):
            v1 = ScopeKey.generate(FILE_ID, Scope.CLINICAL, 1)
            v2 = ScopeKey.generate(FILE_ID, Scope.CLINICAL, 2)
            metadata = {
                "title": "Bilan initial — genou gauche",
                "kind": "bilan",
                "content_type": "text/plain",
                "created": "2026-03-01",
            }
            record = encrypt_record(
                content_rule(n),
                metadata,
                file_id=FILE_ID,
                record_id=RECORD_ID,
                record_version=1,
                scope_key=v1,
                author=alice,
            )
            rekeyed = rekey_record_header(record.header, v1, v2, bob)
        cases.append(
            {
                "content_length": n,
                "content_rule": "byte i = i % 251",
                "metadata": metadata,
                "scope_key_v1": b64e(v1.to_bytes()),
                "scope_key_v2": b64e(v2.to_bytes()),
                "record": record.to_json(),
                "rekeyed_header_by_member": b64e(rekeyed.to_bytes()),
            }
        )
    return {
        "author_identity": alice.public_identity().to_json(),
        "member_identity": bob.public_identity().to_json(),
        "cases": cases,
    }


def invitation_vectors() -> dict[str, Any]:
    """Alice (the practitioner) invites Bob (a parent): the payload opens with the code and
    names Alice's fingerprint; Bob's proof checks with the verifier on Alice's side."""
    alice, bob = _identities()
    with deterministic("invitation"):
        keys = [
            ScopeKey.generate(FILE_ID, Scope.SHARED, 1),
            ScopeKey.generate(FILE_ID, Scope.ADMINISTRATIVE, 2),
        ]
        code, payload, verifier = create_invitation(
            keys, inviter=alice, params=KdfParams.insecure_for_tests())
    proof = redeem_invitation(code, payload, bob.public_identity()).proof
    return {
        "inviter_identity_keys": b64e(alice.to_bytes()),
        "inviter_id": str(ALICE),
        "inviter_fingerprint": b64e(alice.public_identity().fingerprint()),
        "redeemer_identity": bob.public_identity().to_json(),
        "verifier": verifier.to_json(),
        "redemption_proof": b64e(proof),
        "code": code.to_text(),
        "scope_keys": [
            {"scope": k.scope.value, "version": k.version, "key": b64e(k.to_bytes())} for k in keys
        ],
        "payload": payload.to_json(),
    }


def key_change_vectors() -> dict[str, Any]:
    """Alice replaces her identity: the statement is signed by her old key."""
    alice, _ = _identities()
    with deterministic("key-change"):
        new = IdentityKeys.generate(ALICE)
        change = KeyChange.sign(alice, new.public_identity())
    return {
        "old_identity": alice.public_identity().to_json(),
        "new_identity": new.public_identity().to_json(),
        "new_identity_keys": b64e(new.to_bytes()),
        "statement": change.to_json(),
        "signed_bytes": b64e(change.signed_bytes()),
    }


def blind_index_vectors() -> dict[str, Any]:
    alice, _ = _identities()
    key = SearchKey.for_owner(alice)
    names = ["Jean-Éloïse  D'Arc", "JEAN ELOISE D ARC", "Müller", "Ñúñez-García", "Øster"]
    ins = ["1 84 12 76 451 089 46", "2840276451089 30", "1 84 12 2A 451 089 33"]
    return {
        "owner_identity_keys": b64e(alice.to_bytes()),
        "search_key": b64e(key.to_bytes()),
        "names": [
            {"input": n, "normalised": normalise_name(n), "token": key.name_token(n)} for n in names
        ],
        "ins": [
            {"input": i, "normalised": normalise_ins(i), "token": key.ins_token(i)} for i in ins
        ],
    }


def padme_vectors() -> dict[str, Any]:
    lengths = [0, 1, 2, 3, 9, 100, 255, 256, 1000, 4097, 65536, 65537, 10**6, 268435456, 268435457]
    return {"cases": [[n, padme(n)] for n in lengths]}


def audit_head_vectors() -> dict[str, Any]:
    with deterministic("audit-head"):
        key = AuditSigningKey.generate()
        heads = [key.sign(service="kms", chain=f"file:{FILE_ID}", seq=0, hash="0" * 64),
                 key.sign(service="sharing", chain=f"file:{FILE_ID}", seq=7,
                          hash=hashlib.sha256(b"event 7").hexdigest())]
    return {
        "description": "Ed25519 over canonical(ecrin/audit-head/v1, service, chain, u64 seq, "
                       "hash(32), u64 time)",
        "signing_key": b64e(key.to_bytes()),
        "public_key": b64e(key.public_key),
        "cases": [{"signed_head": h.to_json(), "signed_bytes": b64e(h.head.signed_bytes())}
                  for h in heads],
    }


def audit_chain_vectors() -> dict[str, Any]:
    """A chain as a service serves it (hashes from ``ecrin_platform.audit.event_hash``, the
    deployed code) with a signed head; text fields hold non-ASCII, an astral character and
    control characters because the hash covers Python's ASCII-escaped JSON, which a second
    implementation must reproduce exactly. ``broken`` lists altered chains and the position
    of the first event that must fail."""
    from ecrin_platform.audit import GENESIS, event_hash

    chain = f"file:{FILE_ID}:clinical"
    rows = [(str(ALICE), "record.write", f"record:{RECORD_ID}", "ok"),
            (str(BOB), "record.read", "Séance — genou 𝄞 €\u007f\t\"q\"", "ok"),
            (str(BOB), "record.delete", f"record:{RECORD_ID}", "denied")]
    events: list[dict[str, Any]] = []
    previous = GENESIS
    for seq, (actor, action, target, outcome) in enumerate(rows, start=1):
        event = {"chain": chain, "seq": seq, "time": f"2026-03-01T09:3{seq}:00.12345{seq}+00:00",
                 "actor": actor, "action": action, "target": target, "outcome": outcome,
                 "request_id": f"req-{seq:04d}", "service": "records-api", "prev_hash": previous}
        event["hash"] = previous = event_hash(event)
        events.append(event)
    with deterministic("audit-chain"):
        key = AuditSigningKey.generate()
        signed = key.sign(service="records-api", chain=chain, seq=len(events), hash=previous)
    edited = [dict(e) for e in events]
    edited[1]["target"] = "Seance"
    dropped = [events[0], events[2]]
    return {
        "description": "SHA-256 of json.dumps(fields, sort_keys=True, separators=(',', ':')), "
                       "chained from 64 zeros, and the signed head of the last event",
        "served": {"service": "records-api", "chain": chain, "events": events,
                   **signed.to_json(), "audit_key": b64e(key.public_key)},
        "broken": [{"what": "an event's target edited", "events": edited, "broken_at": 2},
                   {"what": "an event dropped", "events": dropped, "broken_at": 2},
                   {"what": "two events swapped", "events": [events[1], events[0], events[2]],
                    "broken_at": 1}],
    }


def name_normalisation_vectors() -> dict[str, Any]:
    """Names where another language's Unicode functions could part from Python's
    (``casefold``, ``unicodedata.combining``, NFKD): sharp s, Greek final sigma, dotted
    capital I, ligatures, letters NFKD keeps, typographic apostrophes and dashes."""
    alice, _ = _identities()
    key = SearchKey.for_owner(alice)
    names = ["Straße", "STRASSE", "ΟΔΥΣΣΕΑΣ", "Οδυσσέας", "İstanbul", "ﬁlomène", "Œuvre Æsop",
             "Łukasz Đoković", "O’Brien", "Marie\u2010Thérèse", "Ｊｅａｎ", "  d'Artagnan._  ",
             "Nguyễn Thị Ánh", "Ærøskøbing"]
    return {
        "search_key": b64e(key.to_bytes()),
        "cases": [{"input": n, "normalised": normalise_name(n), "token": key.name_token(n)}
                  for n in names],
    }


def record_metadata_vectors() -> dict[str, Any]:
    """A record whose metadata JSON needs care to write as Python does: keys that sort by
    code point (digits, capitals, accents, an astral character; JavaScript orders
    integer-like keys first), nested objects, escapes and non-ASCII text."""
    alice, _ = _identities()
    metadata = {"title": "Bilan « initial » — \"genou\"\n\tgauche 🦵", "9": 9, "10": [10, None],
                "Z": True, "é": {"b": 0.5, "a": -1, "𝄞": "clef"}, "\u2028": "line sep",
                "created": "2026-03-01"}
    with deterministic("record-metadata"):
        key = ScopeKey.generate(FILE_ID, Scope.SHARED, 1)
        record = encrypt_record(content_rule(1000), metadata, file_id=FILE_ID,
                                record_id=RECORD_ID, record_version=2, scope_key=key,
                                author=alice)
    return {
        "author_identity": alice.public_identity().to_json(),
        "metadata": metadata,
        "scope_key": b64e(key.to_bytes()),
        "content_length": 1000,
        "record": record.to_json(),
    }


def local_seal_vectors() -> dict[str, Any]:
    """A contact name sealed for the account's own devices (``ecrin_e2ee.local_seal``)."""
    alice, _ = _identities()
    plaintext = '{"b0b00000-0000-4000-8000-000000000002": "Dr Martin Kiné"}'.encode()
    with deterministic("local-seal"):
        sealed = local_seal(alice, "contacts", plaintext)
    return {
        "account_id": str(ALICE),
        "identity_keys": b64e(alice.to_bytes()),
        "purpose": "contacts",
        "subkey_id": 1,
        "key": b64e(local_key(alice, "contacts")),
        "plaintext": b64e(plaintext),
        "sealed": sealed,
    }


BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "kdf": kdf_vectors,
    "identity": identity_vectors,
    "recovery": recovery_vectors,
    "wrapped_identity": wrapped_identity_vectors,
    "keyring_entry": keyring_vectors,
    "record": record_vectors,
    "invitation": invitation_vectors,
    "blind_index": blind_index_vectors,
    "padme": padme_vectors,
    "key_change": key_change_vectors,
    "audit_head": audit_head_vectors,
    "audit_chain": audit_chain_vectors,
    "name_normalisation": name_normalisation_vectors,
    "record_metadata": record_metadata_vectors,
    "local_seal": local_seal_vectors,
}


def render(name: str) -> str:
    return json.dumps(BUILDERS[name](), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name in BUILDERS:
        (DATA / f"{name}.json").write_text(render(name), encoding="utf-8")
        print(f"wrote {name}.json")


if __name__ == "__main__":
    main()
