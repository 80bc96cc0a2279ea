"""What an operator gets: JSON logs with ISO 8601 UTC times and stable fields, one line per
request; Prometheus process, runtime and domain metrics without any per-patient label;
OpenTelemetry spans that follow the caller's traceparent, name the request id and carry
no content, metadata, token or key."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import generate_latest
from sqlalchemy.ext.asyncio import async_sessionmaker

from ecrin_platform.audit import AuditLog
from ecrin_platform.db import create_engine
from ecrin_platform.observability import LOG_FIELDS, Metrics, metrics_var
from ecrin_platform.tokens import Principal
from ecrin_platform.tracing import export_configured, recording_to
from tests.support.apps import Caller, build_app, running

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _capture_logs() -> io.StringIO:
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    return stream


class TestLogs:
    async def test_one_json_line_per_request_with_an_iso_utc_time_and_stable_fields(
            self, service_app):
        async with service_app("sharing") as client:
            stream = _capture_logs()
            await client.get("/healthz", headers={"x-request-id": "log-test-request-1"})
            await client.get("/v1/files", headers={"x-request-id": "log-test-request-2"})
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        requests = [line for line in lines if line["message"] == "request"]
        assert [line["request_id"] for line in requests] == ["log-test-request-1",
                                                             "log-test-request-2"]
        for line in lines:
            assert ISO_UTC.match(line["time"]), line["time"]
            assert set(LOG_FIELDS) <= set(line), line
        assert {"method", "route", "status", "duration_ms"} <= set(requests[1])
        assert requests[1]["status"] == 401  # no internal token: refused, and logged once


class TestMetrics:
    def test_process_and_runtime_families_are_exposed(self):
        text = generate_latest(Metrics("kms").registry).decode()
        for family in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                       "process_open_fds", "python_info", "python_gc_objects_collected_total",
                       "ecrin_audit_events_total", "ecrin_records_written_total",
                       "ecrin_key_releases_total", "ecrin_rotations_pending",
                       "ecrin_notices_listening", "ecrin_access_feed_following"):
            assert f"# TYPE {family.removesuffix('_total')}" in text, family

    async def test_audit_appends_are_counted_when_they_commit_and_name_no_patient(
            self, database_url_for):
        from sharing.models import AuditEvent

        engine = create_engine(database_url_for("sharing"))
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        metrics = Metrics("records-api")
        log = AuditLog(AuditEvent, "records-api")
        file_id, record_id = uuid.uuid4(), uuid.uuid4()
        token = metrics_var.set(metrics)
        try:
            async with sessions() as session, session.begin():
                await log.append(session, chain=f"file:{file_id}", actor=uuid.uuid4(),
                                 action="record.create", target=record_id)
                await log.append(session, chain=f"file:{file_id}", actor=uuid.uuid4(),
                                 action="keys.release", target=file_id, outcome="denied")
            async with sessions() as session:
                async with session.begin():
                    await log.append(session, chain=f"file:{file_id}", actor=None,
                                     action="record.create", target=uuid.uuid4())
                    await session.rollback()
        finally:
            metrics_var.reset(token)
            await engine.dispose()
        registry = metrics.registry
        assert registry.get_sample_value("ecrin_records_written_total", {
            "service": "records-api", "action": "record.create"}) == 1
        assert registry.get_sample_value("ecrin_key_releases_total", {
            "service": "records-api", "outcome": "denied"}) == 1
        assert registry.get_sample_value("ecrin_audit_events_total", {
            "service": "records-api", "action": "record.create", "outcome": "ok"}) == 1
        text = generate_latest(registry).decode()
        assert str(file_id) not in text and str(record_id) not in text


    async def test_audit_events_of_a_background_task_are_counted(self, database_url_for,
                                                                 internal_keys):
        """A task the app starts (a grant expiry swept outside any request) writes audit
        events outside every request: they are counted all the same, once committed."""
        from ecrin_platform.app import build_service_app
        from sharing.app import MIGRATIONS
        from sharing.models import AuditEvent
        from sharing.settings import Settings
        from tests.support.apps import AUDIT_KEYS

        log = AuditLog(AuditEvent, "sharing")

        async def sweep_in_background(app) -> None:
            async def sweep() -> None:
                async with app.state.sessionmaker() as session, session.begin():
                    await log.append(session, chain=f"file:{uuid.uuid4()}", actor=None,
                                     action="grant.expire", target=uuid.uuid4())
            app.state.sweep = asyncio.create_task(sweep())

        settings = Settings(database_url=database_url_for("sharing"),
                            internal_token_public_key=internal_keys[1].decode(),
                            audit_signing_key=AUDIT_KEYS["sharing"].decode())
        app = build_service_app(service="sharing", title="t", settings=settings,
                                script_location=MIGRATIONS, on_startup=[sweep_in_background])

        async def run() -> None:
            async with running(app, rollback=False):
                await app.state.sweep

        # In a task of its own, as a server runs the lifespan: nothing of this test's
        # context (where metrics_var is unset) helps.
        assert metrics_var.get() is None
        await asyncio.create_task(run())
        assert app.state.metrics.registry.get_sample_value("ecrin_audit_events_total", {
            "service": "sharing", "action": "grant.expire", "outcome": "ok"}) == 1


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with recording_to(provider):
        yield exporter
    provider.shutdown()


class TestTracing:
    def test_off_unless_an_otlp_endpoint_is_configured(self):
        assert not export_configured({})
        assert export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
        assert not export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                                      "OTEL_SDK_DISABLED": "true"})

    async def test_a_request_continues_the_callers_trace_down_to_the_database(
            self, spans, database_url_for, internal_keys, issuer):
        app = build_app("sharing", database_url_for("sharing"), internal_keys)
        principal = Principal(str(uuid.uuid4()), "practitioner", second_factor=True)
        headers = {**Caller(issuer, "sharing").headers(principal),
                   "traceparent": TRACEPARENT, "x-request-id": "trace-test-request"}
        secret_token = "blind-index-token-that-must-not-leak"
        async with running(app, rollback=False) as client:
            created = await client.post("/v1/files", headers=headers, json={
                "file_id": str(uuid.uuid4()), "search_tokens": [secret_token]})
            listed = await client.get("/v1/files", headers=headers,
                                      params={"token": secret_token})
        assert created.status_code == 201 and listed.status_code == 200
        finished = spans.get_finished_spans()
        servers = [s for s in finished if s.kind == SpanKind.SERVER]
        assert [s.name for s in servers] == ["POST /v1/files", "GET /v1/files"]
        for span in servers:
            assert format(span.context.trace_id, "032x") == TRACE_ID
            assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"
            assert span.attributes["ecrin.request_id"] == "trace-test-request"
            assert span.attributes["http.route"] == "/v1/files"
        server_ids = {s.context.span_id for s in servers}
        database = [s for s in finished if s.kind == SpanKind.CLIENT
                    and s.parent is not None and s.parent.span_id in server_ids]
        assert database, [s.name for s in finished]
        assert all(format(s.context.trace_id, "032x") == TRACE_ID for s in database)
        everything = json.dumps([{**dict(s.attributes or {}), "name": s.name}
                                 for s in finished])
        assert secret_token not in everything  # neither the body nor the query string
        for value in headers.values():  # nor the internal token
            if value not in ("trace-test-request", TRACEPARENT):
                assert value not in everything
