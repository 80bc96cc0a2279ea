from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    CHUNK_SIZE,
    DecryptionError,
    EncryptedRecord,
    IdentityKeys,
    PublicIdentity,
    RecordDecryptor,
    RecordEncryptor,
    RecordHeader,
    Scope,
    ScopeKey,
    decrypt_to_file,
    encrypt_record,
    open_record,
    padded_content_length,
)

from .vectors import deterministic

META = {"title": "Séance 3", "kind": "note", "content_type": "text/plain", "date": "2026-03-01"}


def _record(
    key: ScopeKey,
    author: IdentityKeys,
    content: bytes,
    *,
    record_id: uuid.UUID | None = None,
    version: int = 1,
    metadata: dict[str, Any] | None = None,
) -> EncryptedRecord:
    return encrypt_record(
        content,
        metadata if metadata is not None else META,
        file_id=key.file_id,
        record_id=record_id or uuid.uuid4(),
        record_version=version,
        scope_key=key,
        author=author,
    )


def _open(
    header: RecordHeader | bytes,
    metadata: bytes,
    chunks: Iterable[bytes],
    key: ScopeKey,
    author: PublicIdentity,
    wrapper: PublicIdentity | None = None,
) -> bytes:
    dec = RecordDecryptor(header, metadata, scope_key=key, author=author, wrapper=wrapper)
    return b"".join(dec.decrypt(chunks))


class TestRoundTrip:
    @pytest.mark.parametrize(
        "size",
        [0, 1, 255, 256, 257, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5],
    )
    def test_sizes(self, clinical_key: ScopeKey, alice: IdentityKeys, size: int) -> None:
        content = bytes(i % 256 for i in range(size))
        record = EncryptedRecord.from_json(_record(clinical_key, alice, content).to_json())
        opened = open_record(record, scope_key=clinical_key, author=alice.public_identity())
        assert opened.content == content and opened.metadata == META
        padded = padded_content_length(size)
        assert record.header.padded_length == padded
        assert sum(len(c) - 17 for c in record.chunks) == padded
        assert all(len(c) == CHUNK_SIZE + 17 for c in record.chunks[:-1])

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        content=st.binary(max_size=3 * CHUNK_SIZE),
        blocks=st.lists(st.integers(1, 100_000), min_size=1, max_size=8),
        metadata=st.dictionaries(
            st.text(max_size=10), st.one_of(st.text(max_size=40), st.integers(), st.booleans())
        ),
    )
    def test_hypothesis_streaming(
        self, content: bytes, blocks: list[int], metadata: dict[str, Any]
    ) -> None:
        author = IdentityKeys.generate(uuid.uuid4())
        key = ScopeKey.generate(uuid.uuid4(), Scope.SHARED, 7)

        def pieces() -> Iterable[bytes]:
            pos, i = 0, 0
            while pos < len(content):
                n = blocks[i % len(blocks)]
                yield content[pos : pos + n]
                pos, i = pos + n, i + 1

        enc = RecordEncryptor(
            file_id=key.file_id,
            record_id=uuid.uuid4(),
            record_version=2,
            scope_key=key,
            author=author,
            metadata=metadata,
        )
        chunks = list(enc.encrypt(pieces()))
        header = RecordHeader.from_bytes(enc.header.to_bytes())
        assert header == enc.header
        assert RecordHeader.from_json(header.to_json()) == header
        dec = RecordDecryptor(
            header, enc.metadata_ciphertext, scope_key=key, author=author.public_identity()
        )
        assert dec.metadata == metadata and dec.content_length == len(content)
        assert b"".join(dec.decrypt(iter(chunks))) == content

    def test_from_file_object(self, clinical_key: ScopeKey, alice: IdentityKeys) -> None:
        content = b"scan" * 50_000
        enc = RecordEncryptor(
            file_id=clinical_key.file_id,
            record_id=uuid.uuid4(),
            record_version=1,
            scope_key=clinical_key,
            author=alice,
            metadata=META,
        )
        chunks = list(enc.encrypt(io.BytesIO(content)))
        assert (
            _open(
                enc.header, enc.metadata_ciphertext, chunks, clinical_key, alice.public_identity()
            )
            == content
        )

    def test_header_not_available_before_the_end(
        self, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        enc = RecordEncryptor(
            file_id=clinical_key.file_id,
            record_id=uuid.uuid4(),
            record_version=1,
            scope_key=clinical_key,
            author=alice,
            metadata={},
        )
        with pytest.raises(RuntimeError):
            _ = enc.header

    def test_refuses_a_key_of_another_file(
        self, alice: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        with pytest.raises(ValueError):
            RecordEncryptor(
                file_id=uuid.uuid4(),
                record_id=uuid.uuid4(),
                record_version=1,
                scope_key=clinical_key,
                author=alice,
                metadata={},
            )

    def test_metadata_is_padded(self, clinical_key: ScopeKey, alice: IdentityKeys) -> None:
        short = _record(clinical_key, alice, b"", metadata={"t": "a"})
        longer = _record(clinical_key, alice, b"", metadata={"t": "a" * 100})
        assert len(short.metadata_ciphertext) == len(longer.metadata_ciphertext)


# Byte ranges of every header field (see record_header.py / docs/protocol.md).
HEADER_FIELDS = {
    "magic": (0, 4),
    "format_version": (4, 1),
    "file_id": (5, 16),
    "record_id": (21, 16),
    "record_version": (37, 4),
    "scope": (41, 1),
    "author_id": (42, 16),
    "stream_header": (58, 24),
    "chunk_size": (82, 4),
    "padded_length": (86, 8),
    "metadata_digest": (94, 32),
    "content_digest": (126, 32),
    "dek_commitment": (158, 32),
    "author_signature": (190, 64),
    "key_version": (254, 4),
    "wrapper_id": (258, 16),
    "wrap_nonce": (274, 24),
    "wrapped_dek": (298, 48),
    "wrap_signature": (346, 64),
}


@pytest.fixture
def sample(clinical_key: ScopeKey, alice: IdentityKeys) -> EncryptedRecord:
    return _record(clinical_key, alice, bytes(range(256)) * 1000)  # 256000 bytes, 4 chunks


class TestHeaderTamper:
    def test_fields_cover_the_header(self) -> None:
        covered = sorted((o, n) for o, n in HEADER_FIELDS.values())
        pos = 0
        for offset, size in covered:
            assert offset == pos
            pos += size
        assert pos == RecordHeader.SIZE

    @pytest.mark.parametrize("name", list(HEADER_FIELDS))
    @pytest.mark.parametrize("where", ["first", "last"])
    def test_flip_a_bit_in_every_field(
        self,
        sample: EncryptedRecord,
        clinical_key: ScopeKey,
        alice: IdentityKeys,
        name: str,
        where: str,
    ) -> None:
        offset, size = HEADER_FIELDS[name]
        raw = bytearray(sample.header.to_bytes())
        raw[offset if where == "first" else offset + size - 1] ^= 0x01
        with pytest.raises(DecryptionError):
            _open(
                bytes(raw),
                sample.metadata_ciphertext,
                sample.chunks,
                clinical_key,
                alice.public_identity(),
            )

    @pytest.mark.parametrize("cut", [0, 1, 409, 411])
    def test_truncated_or_extended_header(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys, cut: int
    ) -> None:
        raw = sample.header.to_bytes()
        raw = raw[:cut] if cut <= len(raw) else raw + b"\0"
        with pytest.raises(DecryptionError):
            _open(
                raw,
                sample.metadata_ciphertext,
                sample.chunks,
                clinical_key,
                alice.public_identity(),
            )

    def test_json_clear_ids_must_match(self, sample: EncryptedRecord) -> None:
        obj = sample.header.to_json()
        obj["record_version"] = 2
        with pytest.raises(DecryptionError):
            RecordHeader.from_json(obj)


ChunkMutation = Callable[[list[bytes]], list[bytes]]


def _flip(chunks: list[bytes], i: int, pos: int) -> list[bytes]:
    out = list(chunks)
    c = bytearray(out[i])
    c[pos] ^= 0x80
    out[i] = bytes(c)
    return out


CHUNK_MUTATIONS: dict[str, ChunkMutation] = {
    **{f"flip-first-byte-{i}": (lambda c, i=i: _flip(c, i, 0)) for i in range(4)},
    **{f"flip-tag-byte-{i}": (lambda c, i=i: _flip(c, i, len(c[i]) - 1)) for i in range(4)},
    **{f"drop-{i}": (lambda c, i=i: c[:i] + c[i + 1 :]) for i in range(4)},
    **{f"duplicate-{i}": (lambda c, i=i: c[: i + 1] + [c[i]] + c[i + 1 :]) for i in range(4)},
    "swap-0-1": lambda c: [c[1], c[0], *c[2:]],
    "swap-2-3": lambda c: [*c[:2], c[3], c[2]],
    "reverse": lambda c: c[::-1],
    "truncate-last": lambda c: c[:-1],
    "truncate-to-first": lambda c: c[:1],
    "empty": lambda c: [],
    "shorten-last": lambda c: [*c[:-1], c[-1][:-1]],
    "extend-last": lambda c: [*c[:-1], c[-1] + b"\0"],
    "append-copy": lambda c: [*c, c[-1]],
    "append-garbage": lambda c: [*c, b"\0" * 100],
    "split-chunk": lambda c: [c[0][:100], c[0][100:], *c[1:]],
    "merge-chunks": lambda c: [c[0] + c[1], *c[2:]],
}


class TestChunkTamper:
    @pytest.mark.parametrize("name", list(CHUNK_MUTATIONS))
    def test_mutation(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys, name: str
    ) -> None:
        assert len(sample.chunks) == 4
        chunks = CHUNK_MUTATIONS[name](list(sample.chunks))
        with pytest.raises(DecryptionError):
            _open(
                sample.header,
                sample.metadata_ciphertext,
                chunks,
                clinical_key,
                alice.public_identity(),
            )

    def test_flip_metadata(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        for pos in (0, 30, len(sample.metadata_ciphertext) - 1):
            meta = bytearray(sample.metadata_ciphertext)
            meta[pos] ^= 1
            with pytest.raises(DecryptionError):
                _open(
                    sample.header, bytes(meta), sample.chunks, clinical_key, alice.public_identity()
                )

    def test_truncated_metadata(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        for meta in (b"", sample.metadata_ciphertext[:-1], sample.metadata_ciphertext + b"\0"):
            with pytest.raises(DecryptionError):
                _open(sample.header, meta, sample.chunks, clinical_key, alice.public_identity())


class TestSwaps:
    """Ciphertexts moved between records, versions, files, scopes and key versions."""

    def _other(
        self, kind: str, key: ScopeKey, alice: IdentityKeys, sample: EncryptedRecord
    ) -> tuple[EncryptedRecord, ScopeKey]:
        content = bytes(range(256)) * 1000
        if kind == "record":
            return _record(key, alice, content), key
        if kind == "version":
            return _record(key, alice, content, record_id=sample.header.record_id, version=2), key
        if kind == "file":
            other = ScopeKey(uuid.uuid4(), key.scope, key.version, key.to_bytes())
            return _record(other, alice, content), other
        if kind == "scope":
            other = ScopeKey(key.file_id, Scope.SHARED, key.version, key.to_bytes())
            return _record(other, alice, content, record_id=sample.header.record_id), other
        if kind == "key_version":
            other = ScopeKey(key.file_id, key.scope, 2, key.to_bytes())
            return _record(other, alice, content, record_id=sample.header.record_id), other
        raise AssertionError(kind)

    KINDS = ["record", "version", "file", "scope", "key_version"]

    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize(
        "part", ["header", "metadata", "first-chunk", "last-chunk", "all-chunks"]
    )
    def test_swap(
        self,
        sample: EncryptedRecord,
        clinical_key: ScopeKey,
        alice: IdentityKeys,
        kind: str,
        part: str,
    ) -> None:
        other, other_key = self._other(kind, clinical_key, alice, sample)
        header, meta, chunks = sample.header, sample.metadata_ciphertext, list(sample.chunks)
        if part == "header":
            header = other.header
        elif part == "metadata":
            meta = other.metadata_ciphertext
        elif part == "first-chunk":
            chunks[0] = other.chunks[0]
        elif part == "last-chunk":
            chunks[-1] = other.chunks[-1]
        else:
            chunks = list(other.chunks)
        for key in (clinical_key, other_key):
            with pytest.raises(DecryptionError):
                _open(header, meta, chunks, key, alice.public_identity())

    def test_wrong_scope_key(
        self, sample: EncryptedRecord, alice: IdentityKeys, clinical_key: ScopeKey
    ) -> None:
        for key in (
            ScopeKey.generate(clinical_key.file_id, Scope.CLINICAL, 1),
            ScopeKey(clinical_key.file_id, Scope.CLINICAL, 2, clinical_key.to_bytes()),
            ScopeKey(clinical_key.file_id, Scope.SHARED, 1, clinical_key.to_bytes()),
        ):
            with pytest.raises(DecryptionError):
                open_record(sample, scope_key=key, author=alice.public_identity())

    def test_wrong_author(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, mallory: IdentityKeys
    ) -> None:
        with pytest.raises(DecryptionError):
            open_record(sample, scope_key=clinical_key, author=mallory.public_identity())

    def test_insider_restream_under_the_same_dek_is_caught(
        self, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        """Chunks that authenticate under the DEK but differ from what the author signed
        (e.g. re-encrypted by another scope-key holder) fail on the content digest."""
        record_id = uuid.uuid4()
        with deterministic("same-dek"):
            genuine = _record(clinical_key, alice, b"A" * 100_000, record_id=record_id)
        with deterministic("same-dek"):
            forged = _record(clinical_key, alice, b"B" * 100_000, record_id=record_id)
        dec = RecordDecryptor(
            genuine.header,
            genuine.metadata_ciphertext,
            scope_key=clinical_key,
            author=alice.public_identity(),
        )
        received: list[bytes] = []
        with pytest.raises(DecryptionError):
            for piece in dec.decrypt(forged.chunks):
                received.append(piece)
        # documented behaviour: plaintext was yielded before the late failure, and must be
        # discarded by the caller (decrypt_to_file does it).
        assert received


class TestDecryptToFile:
    def test_success(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys, tmp_path: Path
    ) -> None:
        dec = RecordDecryptor(
            sample.header,
            sample.metadata_ciphertext,
            scope_key=clinical_key,
            author=alice.public_identity(),
        )
        decrypt_to_file(dec, sample.chunks, tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == bytes(range(256)) * 1000
        assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]

    def test_failure_leaves_nothing(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys, tmp_path: Path
    ) -> None:
        dec = RecordDecryptor(
            sample.header,
            sample.metadata_ciphertext,
            scope_key=clinical_key,
            author=alice.public_identity(),
        )
        with pytest.raises(DecryptionError):
            decrypt_to_file(dec, sample.chunks[:-1], tmp_path / "out.bin")
        assert list(tmp_path.iterdir()) == []


class TestDecryptToFileSyncsEarly:
    """Data syncs run while the file is written, so the fsync before the rename is short;
    the file is still synced last, and a failed sync still leaves nothing."""

    @staticmethod
    def _decryptor(sample: EncryptedRecord, key: ScopeKey, alice: IdentityKeys
                   ) -> RecordDecryptor:
        return RecordDecryptor(sample.header, sample.metadata_ciphertext, scope_key=key,
                               author=alice.public_identity())

    def test_syncs_run_before_the_final_fsync(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import os

        import ecrin_e2ee.records as records_module

        events: list[str] = []
        real_fsync = os.fsync
        monkeypatch.setattr(records_module, "_EARLY_SYNC_BYTES", 1)
        monkeypatch.setattr(records_module, "_datasync", lambda fd: events.append("early"))

        def fsync(fd: int) -> None:
            events.append("final")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        decrypt_to_file(self._decryptor(sample, clinical_key, alice), sample.chunks,
                        tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == bytes(range(256)) * 1000
        assert events[0] == "early" and events[-1] == "final" and events.count("final") == 1

    def test_what_is_synced_leaves_the_page_cache(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import os

        import ecrin_e2ee.records as records_module

        events: list[tuple[str, int]] = []
        real_fsync = os.fsync
        monkeypatch.setattr(records_module, "_EARLY_SYNC_BYTES", 1)
        monkeypatch.setattr(records_module, "_datasync", lambda fd: events.append(("sync", 0)))
        monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", 0)),
                                                     real_fsync(fd)))

        def advise(fd: int, offset: int, length: int, advice: int) -> None:
            assert offset == 0 and advice == os.POSIX_FADV_DONTNEED
            events.append(("drop", length))

        monkeypatch.setattr(records_module, "_fadvise", advise)
        decrypt_to_file(self._decryptor(sample, clinical_key, alice), sample.chunks,
                        tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == bytes(range(256)) * 1000
        # Each early sync drops what it synced (never more), the final fsync the rest.
        assert events[:2] == [("sync", 0), ("drop", events[1][1])] and events[1][1] > 0
        assert events[-2:] == [("fsync", 0), ("drop", 0)]
        for (kind, _), (after, _) in zip(events, events[1:], strict=False):
            assert after != "drop" or kind in ("sync", "fsync")

    def test_a_failed_sync_fails_and_leaves_nothing(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import ecrin_e2ee.records as records_module

        def broken(fd: int) -> None:
            raise OSError("disk gone")

        monkeypatch.setattr(records_module, "_EARLY_SYNC_BYTES", 1)
        monkeypatch.setattr(records_module, "_datasync", broken)
        with pytest.raises(OSError, match="disk gone"):
            decrypt_to_file(self._decryptor(sample, clinical_key, alice), sample.chunks,
                            tmp_path / "out.bin")
        assert list(tmp_path.iterdir()) == []


class TestLifecycle:
    def test_abandoned_streams_stop_their_digest_thread(
        self, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        import threading

        before = threading.active_count()
        enc = RecordEncryptor(
            file_id=clinical_key.file_id,
            record_id=uuid.uuid4(),
            record_version=1,
            scope_key=clinical_key,
            author=alice,
            metadata={},
        )
        stream = enc.encrypt(bytes(CHUNK_SIZE) for _ in range(40))
        for _ in range(20):  # the first chunk and a batch: the hashing thread runs
            next(stream)
        assert threading.active_count() == before + 1
        stream.close()
        assert threading.active_count() == before
        with pytest.raises(RuntimeError):
            _ = enc.header

    @pytest.mark.parametrize("chunks", [1, 2, 16, 17, 18, 33, 34, 50])
    def test_the_content_digest_is_sha256_of_every_chunk_in_order(self, chunks: int) -> None:
        """Hashed inline, then in batches on a thread: the same digest at every boundary."""
        import hashlib
        import os

        from ecrin_e2ee.records import _ContentDigest

        parts = [os.urandom(64) for _ in range(chunks)]
        digest = _ContentDigest()
        for part in parts:
            digest.update(part)
        assert digest.digest() == hashlib.sha256(b"ecrin-content-v1" + b"".join(parts)).digest()

    def test_abandoned_decryption_stops_its_thread(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        import threading

        before = threading.active_count()
        dec = RecordDecryptor(
            sample.header,
            sample.metadata_ciphertext,
            scope_key=clinical_key,
            author=alice.public_identity(),
        )
        stream = dec.decrypt(sample.chunks)
        next(stream), next(stream)
        stream.close()
        assert threading.active_count() == before

    def test_one_shot_objects(
        self, sample: EncryptedRecord, clinical_key: ScopeKey, alice: IdentityKeys
    ) -> None:
        dec = RecordDecryptor(
            sample.header,
            sample.metadata_ciphertext,
            scope_key=clinical_key,
            author=alice.public_identity(),
        )
        b"".join(dec.decrypt(sample.chunks))
        with pytest.raises(RuntimeError):
            list(dec.decrypt(sample.chunks))
