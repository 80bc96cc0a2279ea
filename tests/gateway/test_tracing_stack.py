"""One record creation is one trace across the gateway, the records API and the sharing
service (its access decision), down to the databases, exported by OTLP/HTTP to a collector
(here a small receiver in the test) when one is configured, and carrying no secret."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyotp
import pytest
from ecrin_client import EcrinClient, Patients, Profile, Records
from ecrin_client.patients import PatientIdentity
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ecrin_platform.devstack import free_port
from tests.e2e.records_support import PASSPHRASE, session_note, session_note_meta
from tests.support.stack import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

SPAN_KINDS = {1: "internal", 2: "server", 3: "client"}


class Collector(ThreadingHTTPServer):
    """Receives OTLP/HTTP protobuf exports: every span, with its service's name."""

    def __init__(self, port: int) -> None:
        self.spans: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.bodies.append(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append({
                        "service": service, "name": span.name,
                        "kind": SPAN_KINDS.get(span.kind, str(span.kind)),
                        "trace": span.trace_id.hex(), "id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                        "attributes": {a.key: a.value for a in span.attributes}})
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def traced_stack(tmp_path_factory, worker_id_safe) -> Iterator[tuple[Any, Collector]]:
    collector = Collector(free_port())
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    stack = start_stack("sqlite", tmp_path_factory.mktemp("traced"), worker_id_safe + "t",
                        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}",
                        OTEL_BSP_SCHEDULE_DELAY="100",
                        # no cached access decision: the records API asks sharing each time
                        ECRIN_RECORDS_AUTHZ_CACHE_S="0")
    try:
        yield stack, collector
    finally:
        stack.stop_all()
        collector.shutdown()


async def create_one_record(server: str, home: Path) -> str:
    email = f"practitioner-{uuid.uuid4().hex[:10]}@example.fr"
    async with EcrinClient(server, Profile(home)) as client:
        await client.signup(email, PASSPHRASE, "practitioner")
        await client.login(email, PASSPHRASE)
        enrolment = await client.enable_totp()
        await client.confirm_totp(pyotp.TOTP(enrolment.secret).now())
        records = Records(client, await client.unlock(PASSPHRASE))
        patient = await Patients(records).create(PatientIdentity(
            name="Trace Martin", birth_date=date(1975, 2, 3)))
        text = session_note("séance tracée")
        await records.create(patient.file_id, "clinical", session_note_meta("Séance", text),
                             text)
        return patient.file_id


def trace_of_record_creation(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    gateway = [s for s in spans if s["service"] == "gateway" and s["kind"] == "server"
               and s["name"].startswith("POST /v1/records")]
    if not gateway:
        return []
    trace_id = gateway[-1]["trace"]
    return sorted((s for s in spans if s["trace"] == trace_id), key=lambda s: s["start"])


def render(trace: list[dict[str, Any]]) -> str:
    """The trace as an indented tree: service, span name, kind, duration."""
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for span in trace:
        by_parent.setdefault(span["parent"], []).append(span)
    ids = {s["id"] for s in trace}
    roots = [s for s in trace if s["parent"] not in ids]
    lines: list[str] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        lines.append(f"{'  ' * depth}{span['service']:<12} {span['kind']:<7} "
                     f"{(span['end'] - span['start']) / 1e6:8.2f} ms  {span['name']}")
        for child in by_parent.get(span["id"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return "\n".join(lines)


class TestOneRecordCreation:
    def test_is_one_trace_across_the_three_processes_and_their_databases(
            self, traced_stack, tmp_path):
        stack, collector = traced_stack
        asyncio.run(create_one_record(stack.url("gateway"), tmp_path))
        deadline = time.monotonic() + 10
        trace: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            trace = trace_of_record_creation(collector.spans)
            # Each process exports its spans on its own: the records API's client span (its
            # call to sharing) can arrive before its server span, which ends last.
            if {("records-api", "server"), ("sharing", "server")} <= {
                    (s["service"], s["kind"]) for s in trace}:
                break
            time.sleep(0.2)
        assert trace, sorted({(s["service"], s["name"]) for s in collector.spans})
        print("\n" + render(trace))
        by_id = {s["id"]: s for s in trace}
        records = [s for s in trace if s["service"] == "records-api" and s["kind"] == "server"]
        assert records and by_id[records[0]["parent"]]["service"] == "gateway"
        sharing = [s for s in trace if s["service"] == "sharing" and s["kind"] == "server"]
        assert sharing, "the access decision is part of the trace"
        databases = {s["service"] for s in trace if s["kind"] == "client"
                     and s["attributes"].get("db.system") is not None
                     or s["name"].split(" ")[0] in ("SELECT", "INSERT", "UPDATE", "BEGIN")}
        assert {"records-api", "sharing"} <= databases
        request_ids = {s["attributes"]["ecrin.request_id"].string_value for s in trace
                       if "ecrin.request_id" in s["attributes"]}
        assert len(request_ids) == 1  # the gateway's request id, carried to both services

    def test_no_token_or_ciphertext_reaches_the_collector(self, traced_stack, tmp_path):
        stack, collector = traced_stack
        asyncio.run(create_one_record(stack.url("gateway"), tmp_path))
        time.sleep(0.5)
        exported = b"".join(collector.bodies)
        assert exported
        for marker in (b"Bearer", b"eyJ", b"Trace Martin", "séance tracée".encode()):
            assert marker not in exported, marker
