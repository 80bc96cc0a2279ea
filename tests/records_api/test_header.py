"""The records API's key-less header reader agrees with ``ecrin_e2ee``."""

from __future__ import annotations

import uuid

import pytest

from ecrin_e2ee import IdentityKeys, Scope, ScopeKey, encrypt_record, rekey_record_header
from records_api.records.header import MalformedHeader, parse_header


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65_536, 65_537, 1 << 20, (1 << 20) + 12345])
@pytest.mark.parametrize("scope", list(Scope))
def test_parsed_fields_and_ciphertext_length(size: int, scope: Scope):
    file_id, record_id = uuid.uuid4(), uuid.uuid4()
    author = IdentityKeys.generate(uuid.uuid4())
    key = ScopeKey.generate(file_id, scope, 7)
    record = encrypt_record(b"\x01" * size, {}, file_id=file_id, record_id=record_id,
                            record_version=3, scope_key=key, author=author)
    facts = parse_header(record.header.to_bytes())
    assert (facts.file_id, facts.record_id, facts.record_version, facts.scope,
            facts.author_id, facts.key_version) == (file_id, record_id, 3, scope.value,
                                                   author.account_id, 7)
    assert facts.content_digest == record.header.content_digest
    assert facts.ciphertext_length == sum(len(c) for c in record.chunks)


def test_wrapper_is_the_author_then_whoever_re_keyed():
    file_id = uuid.uuid4()
    author, rotator = IdentityKeys.generate(uuid.uuid4()), IdentityKeys.generate(uuid.uuid4())
    old, new = (ScopeKey.generate(file_id, Scope.SHARED, v) for v in (1, 2))
    record = encrypt_record(b"x", {}, file_id=file_id, record_id=uuid.uuid4(),
                            record_version=1, scope_key=old, author=author)
    assert parse_header(record.header.to_bytes()).wrapper_id == author.account_id
    rekeyed = rekey_record_header(record.header, old, new, rotator)
    facts = parse_header(rekeyed.to_bytes())
    assert (facts.wrapper_id, facts.author_id, facts.key_version) == (
        rotator.account_id, author.account_id, 2)


@pytest.mark.parametrize("data", [b"", bytes(410), b"ECRH" + bytes(406), b"ECRH\x01" + bytes(500)])
def test_malformed(data: bytes):
    with pytest.raises(MalformedHeader):
        parse_header(data)
