"""The records API's key-less header reader agrees with ``ecrin_e2ee``."""

from __future__ import annotations

import uuid

import pytest

from ecrin_e2ee import IdentityKeys, Scope, ScopeKey, encrypt_record
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


@pytest.mark.parametrize("data", [b"", bytes(410), b"ECRH" + bytes(406), b"ECRH\x01" + bytes(500)])
def test_malformed(data: bytes):
    with pytest.raises(MalformedHeader):
        parse_header(data)
