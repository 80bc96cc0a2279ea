"""A document upload whose connection drops mid-way resumes instead of starting over.

The SDK talks to the real gateway through a TCP proxy (tests/support/cutting_proxy.py) that
resets the connection once, in the middle of the upload; the SDK asks the records API where
the upload stands and sends the rest. Then the CLI, on the same device but another process
and straight to the gateway, downloads the document: byte for byte the one sent. The bytes
sent through the proxy show what the cut cost: at most one piece (8 MiB) more than the
ciphertext.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ecrin_client import EcrinClient, Profile
from ecrin_client.kine import PatientIdentity, RecordMetadata
from ecrin_client.uploads import PIECE_BYTES

from ecrin_platform.devstack import Stack
from tests.e2e.records_support import new_practitioner
from tests.support.cutting_proxy import cutting_proxy

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SIZE = 24 << 20
#: Request headers and the open/HEAD requests, beside the content itself.
OVERHEAD = 256 << 10


def write_document(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(SIZE >> 20):
            block = (b"%PDF-1.7\n" + os.urandom((1 << 20) - 9)) if i == 0 else os.urandom(1 << 20)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_cut_upload_resumes_and_reads_back_identical(stack: Stack, tmp_path: Path,
                                                            record_property) -> None:
    source, back = tmp_path / "irm.pdf", tmp_path / "irm-back.pdf"
    expected = write_document(source)
    gateway = urlsplit(stack.url("gateway"))
    kine = await new_practitioner(stack.url("gateway"), tmp_path / "home")
    with cutting_proxy(gateway.hostname or "127.0.0.1", gateway.port or 80) as proxy:
        async with EcrinClient(proxy.url, Profile(kine.home)) as client:
            records, patients = await kine.unlocked(client)
            patient = await patients.create(PatientIdentity(
                name="Document Coupé", birth_date=datetime(1980, 1, 2).date()))
            # Cut in the middle of the second piece.
            proxy.arm(PIECE_BYTES + PIECE_BYTES // 2 + 12345)
            info = await records.create(patient.file_id, "clinical", RecordMetadata(
                title="IRM coupée", kind="imaging", content_type="application/pdf", size=SIZE,
                created_at=datetime.now(UTC), filename="irm.pdf"), source)
            sent = proxy.sent
        assert proxy.cuts == 1
    ciphertext = SIZE + SIZE // (64 << 10) * 17  # the padded stream and its chunk tags
    resent = sent - ciphertext
    record_property("bytes_sent", sent)
    record_property("bytes_resent", resent)
    print(f"\n{SIZE >> 20} MiB cut once: {sent} bytes sent, about {resent} more than the "
          "ciphertext")
    assert 0 < resent < PIECE_BYTES + OVERHEAD, resent

    kine.ok("record", "get", patient.file_id, info.record_id, "-o", str(back))
    assert sha256_of(back) == expected


async def test_the_cli_resumes_too(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "scan.pdf"
    expected = write_document(source)
    gateway = urlsplit(stack.url("gateway"))
    kine = await new_practitioner(stack.url("gateway"), tmp_path / "home")
    patient = kine.ok("patient", "create", "--name", "Patiente CLI", "--birth-date",
                      "1990-04-05")
    with cutting_proxy(gateway.hostname or "127.0.0.1", gateway.port or 80) as proxy:
        proxy.arm(2 * PIECE_BYTES + 54321)
        added = replace(kine, server=proxy.url).ok("record", "add", patient["file_id"],
                                                   str(source), "--kind", "imaging")
        assert proxy.cuts == 1
    back = tmp_path / "scan-back.pdf"
    kine.ok("record", "get", patient["file_id"], added["record_id"], "-o", str(back))
    assert sha256_of(back) == expected
