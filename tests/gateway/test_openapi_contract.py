"""The published OpenAPI says what the server does, headers included.

The SDK drives a practice's day (sign-up, second factor, patient, record, new version,
reads) through a transport that records every exchange; each one must be a status the
document declares for that operation, carry every response header the document marks
required, and carry no watched header the document does not declare. Then the headers the
document marks required are left out one at a time and the server must refuse.
Schemathesis (tests/adversarial) checks the bodies; this test checks the headers.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from ecrin_client import EcrinClient, Patients, Profile, Records
from ecrin_client.patients import PatientIdentity
from ecrin_client.sharing import Sharing

from tests.e2e.records_support import PASSPHRASE, session_note, session_note_meta
from tests.support.users import HTTP

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

#: Response headers whose presence the document states (never Content-Length and such).
WATCHED = ("etag", "location", "retry-after", "www-authenticate", "ratelimit",
           "ratelimit-policy", "x-request-id", "allow")


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    headers: httpx.Headers


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport = field(default_factory=httpx.AsyncHTTPTransport)
    seen: list[Exchange] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append(Exchange(request.method.lower(), request.url.path,
                                  response.status_code, response.headers))
        return response


class Contract:
    """The document, and the drift of one exchange from it."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        # Literal paths first: /v1/records/headers is not /v1/records/{record_id}.
        self.templates = sorted(doc["paths"], key=lambda p: (p.count("{"), -len(p)))

    def template(self, path: str) -> str:
        for template in self.templates:
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path):
                return template
        raise AssertionError(f"{path} is not in the document")

    def header(self, ref_or_header: dict[str, Any]) -> dict[str, Any]:
        ref = ref_or_header.get("$ref")
        if ref is None:
            return ref_or_header
        header: dict[str, Any] = self.doc["components"]["headers"][ref.rsplit("/", 1)[1]]
        return header

    def drift(self, exchange: Exchange) -> list[str]:
        template = self.template(exchange.path)
        where = f"{exchange.method.upper()} {template} -> {exchange.status}"
        operation = self.doc["paths"][template].get(exchange.method)
        if operation is None:
            return [] if exchange.status == 405 else [f"{where}: undocumented method"]
        response = operation["responses"].get(str(exchange.status))
        if response is None:
            return [f"{where}: status not declared"]
        declared = {name.lower(): self.header(h)
                    for name, h in response.get("headers", {}).items()}
        problems = []
        for name in WATCHED:
            present = name in exchange.headers
            if present and name not in declared and name != "allow":
                problems.append(f"{where}: sends {name}, not declared")
            if not present and declared.get(name, {}).get("required"):
                problems.append(f"{where}: declares {name} required, not sent")
        return problems

    def required_headers(self, method: str, template: str) -> set[str]:
        operation = self.doc["paths"][template][method]
        return {p["name"] for p in operation.get("parameters", [])
                if p["in"] == "header" and p.get("required")}

    def methods(self, template: str) -> set[str]:
        return {m.upper() for m in self.doc["paths"][template]}


async def signed_up(client: EcrinClient, role: str) -> None:
    email = f"{role}-{uuid.uuid4().hex[:10]}@example.fr"
    await client.signup(email, PASSPHRASE, role)
    await client.login(email, PASSPHRASE)
    enrolment = await client.enable_totp()
    await client.confirm_totp(pyotp.TOTP(enrolment.secret).now())


async def practice_day(server: str, homes: tuple[Path, Path],
                       transport: Recorder) -> dict[str, str]:
    """A practitioner's day, and a patient redeeming an invitation: every kind of 201 (file,
    keyring, record, version, invitation, the grant's keyring entries, a rotation) and
    the rate-limited forwarded routes (invitation look-up and redemption)."""
    async with EcrinClient(server, Profile(homes[0]), transport=transport) as client:
        await signed_up(client, "practitioner")
        records = Records(client, await client.unlock(PASSPHRASE))
        patient = await Patients(records).create(PatientIdentity(
            name="Contrat Durand", birth_date=date(1980, 5, 17)))
        text = session_note("premier bilan")
        info = await records.create(patient.file_id, "clinical",
                                    session_note_meta("Bilan", text), text)
        await records.read(info.record_id)
        again = session_note("deuxième séance")
        await records.add_version(info.record_id, session_note_meta("Séance", again), again)
        await records.list(patient.file_id)
        invited = await Sharing(records).invite(patient.file_id, "patient")
        async with EcrinClient(server, Profile(homes[1]), transport=transport) as other:
            await signed_up(other, "patient")
            accepted = await Sharing(Records(other, await other.unlock(PASSPHRASE))).accept(
                invited.code)
        # The grant, read by its granter, then revoked: the revocation's rotation stores
        # the next key versions (POST /v1/keyrings/{file_id}/entries).
        await client.transport.request("GET", f"/v1/grants/{accepted.grant_id}")
        await Sharing(records).revoke(accepted.grant_id)
        tokens = client.transport.tokens
        assert tokens is not None
        return {"record_id": str(info.record_id), "file_id": str(patient.file_id),
                "grant_id": accepted.grant_id, "access_token": tokens.access_token}


@pytest.fixture(scope="module")
def day(stack, tmp_path_factory) -> tuple[Contract, Recorder, dict[str, str]]:
    doc = HTTP.get(stack.url("gateway") + "/openapi.json").json()
    recorder = Recorder()
    homes = (tmp_path_factory.mktemp("device"), tmp_path_factory.mktemp("patient-device"))
    ids = asyncio.run(practice_day(stack.url("gateway"), homes, recorder))
    return Contract(doc), recorder, ids


class TestWhatTheSdkSaw:
    def test_every_answer_matches_the_document(self, day):
        contract, recorder, _ = day
        assert len(recorder.seen) >= 10
        drift = [p for exchange in recorder.seen for p in contract.drift(exchange)]
        assert drift == []

    def test_the_day_covered_the_headers_that_matter(self, day):
        _, recorder, _ = day
        sent = {h for e in recorder.seen for h in WATCHED if h in e.headers}
        assert {"etag", "location", "ratelimit", "x-request-id"} <= sent

    def test_every_201_says_where_what_it_made_is(self, day):
        contract, recorder, _ = day
        created = {(e.method, contract.template(e.path)): e.headers.get("location")
                   for e in recorder.seen if e.status == 201}
        assert {("put", "/v1/keyrings/{file_id}/initial"), ("post", "/v1/files"),
                ("post", "/v1/records"), ("post", "/v1/records/{record_id}/versions"),
                ("post", "/v1/invitations"), ("post", "/v1/keyrings/{file_id}/entries"),
                ("post", "/v1/keyrings/{file_id}/grants/{grant_id}")} <= set(created)
        assert all(location and location.startswith("/v1/")
                   for location in created.values()), created

    def test_rate_limited_forwarded_routes_say_what_is_left(self, day):
        contract, recorder, _ = day
        limited = [e for e in recorder.seen if contract.template(e.path) in (
            "/v1/invitations/lookup/{lookup_id}", "/v1/invitations/{invitation_id}/redeem")]
        assert {e.status for e in limited} == {200}
        assert all("ratelimit" in e.headers and "ratelimit-policy" in e.headers
                   for e in limited)
        # Forwarded routes the gateway does not count say nothing of a limit.
        others = [e for e in recorder.seen if contract.template(e.path).startswith(
            ("/v1/records", "/v1/files", "/v1/keyrings"))]
        assert others and not any("ratelimit" in e.headers for e in others)


class TestRequiredRequestHeaders:
    def _call(self, stack, contract, method, path, token, **kwargs) -> Exchange:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        response = HTTP.request(method, stack.url("gateway") + path, headers=headers, **kwargs)
        exchange = Exchange(method.lower(), path.split("?")[0], response.status_code,
                            response.headers)
        assert contract.drift(exchange) == []
        return exchange

    def test_if_match_is_required_where_the_server_answers_428(self, stack, day):
        contract, _, ids = day
        assert contract.required_headers("delete", "/v1/records/{record_id}") == {"If-Match"}
        exchange = self._call(stack, contract, "DELETE", f"/v1/records/{ids['record_id']}",
                              ids["access_token"])
        assert exchange.status == 428

    def test_idempotency_key_is_required_where_the_server_refuses_without_it(self, stack, day):
        contract, _, ids = day
        assert "Idempotency-Key" in contract.required_headers("post", "/v1/records")
        assert "Idempotency-Key" in contract.required_headers("post", "/v1/auth/signup")
        exchange = self._call(stack, contract, "POST", "/v1/records", ids["access_token"],
                              json={})
        assert exchange.status in (400, 422)

    @pytest.mark.parametrize("template", [
        "/v1/records/{record_id}", "/v1/records/{record_id}/versions/2",
        "/v1/records/{record_id}/versions/2/content", "/v1/files/{file_id}",
        "/v1/grants/{grant_id}", "/v1/grants?file_id={file_id}"])
    def test_a_matching_if_none_match_is_a_304_with_its_etag(self, stack, day, template):
        contract, _, ids = day
        path = template.format(**ids)
        first = self._call(stack, contract, "GET", path, ids["access_token"])
        assert first.status == 200
        assert "If-None-Match" in {p["name"] for p in contract.doc["paths"][
            contract.template(path.split("?")[0])]["get"]["parameters"]}
        second = self._call(stack, contract, "GET", path, ids["access_token"],
                            headers={"If-None-Match": first.headers["etag"]})
        assert second.status == 304
        assert second.headers["etag"] == first.headers["etag"]
        stale = self._call(stack, contract, "GET", path, ids["access_token"],
                           headers={"If-None-Match": '"v999", "d-AAAA"'})
        assert stale.status == 200

    @pytest.mark.parametrize(("read", "action"), [
        ("/v1/records/{record_id}", "record.read"),
        ("/v1/records/{record_id}/versions/2/content", "record.content.read")])
    def test_a_304_is_answered_before_the_read_and_audits_nothing(self, stack, day, read,
                                                                  action):
        """Nothing is released by a 304 (no ciphertext, no key): the record's route answers
        it before reading the version or its content, and before its audit event."""
        contract, _, ids = day
        auth = {"Authorization": f"Bearer {ids['access_token']}"}
        gateway = stack.url("gateway")

        def reads() -> int:
            chain = HTTP.get(gateway + "/v1/records/audit", headers=auth,
                             params={"file_id": ids["file_id"], "scope": "clinical"}).json()
            return sum(1 for e in chain["events"] if e["action"] == action)

        path = read.format(**ids)
        before = reads()
        etag = HTTP.get(gateway + path, headers=auth).headers["etag"]
        assert reads() == before + 1
        unchanged = HTTP.get(gateway + path, headers={**auth, "If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert reads() == before + 1


class TestConventions:
    def test_401_names_the_bearer_scheme(self, stack, day):
        contract, _, _ = day
        response = HTTP.get(stack.url("gateway") + "/v1/files")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert contract.drift(Exchange("get", "/v1/files", 401, response.headers)) == []

    @pytest.mark.parametrize("template", ["/v1/records/{record_id}", "/v1/grants/{grant_id}",
                                          "/v1/invitations/{invitation_id}"])
    def test_405_allows_every_method_of_the_path(self, stack, day, template):
        contract, _, ids = day
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        response = HTTP.patch(stack.url("gateway") + path,
                              headers={"Authorization": f"Bearer {ids['access_token']}"})
        assert response.status_code == 405
        allowed = {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"}
        assert allowed == contract.methods(template)

    def test_validation_problems_carry_errors(self, stack, day):
        _, _, ids = day
        response = HTTP.post(stack.url("gateway") + "/v1/grants", json={"file_id": "x"},
                             headers={"Authorization": f"Bearer {ids['access_token']}"})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["errors"] and {"loc", "msg", "type"} <= set(body["errors"][0])


class TestDeclaredErrorsAndExamples:
    @pytest.mark.parametrize(("method", "template", "forbids"), [
        # A recovery session is refused everywhere but the passphrase-wrap routes (the
        # gateway), and by every route that needs a normal session (the services).
        ("get", "/v1/files/{file_id}", True),
        ("post", "/v1/records", True),
        ("get", "/v1/keys/me/wraps/passphrase/{key_id}", True),
        ("get", "/v1/keys/me/wraps/recovery", False),
        ("put", "/v1/keys/me/wraps/passphrase/{key_id}", False),
        ("get", "/v1/records/service-info", False),
        ("post", "/v1/auth/login", False),
    ])
    def test_403_is_declared_where_a_route_can_refuse_with_it(self, day, method, template,
                                                             forbids):
        contract, _, _ = day
        assert ("403" in contract.doc["paths"][template][method]["responses"]) is forbids

    def test_a_recovery_session_route_that_cannot_refuse_with_403_does_not(self, stack, day):
        """The route declared without 403 really has no such refusal: an ordinary session
        reaching it gets its 404 (no wrap of that key id), not a 403."""
        contract, _, ids = day
        response = HTTP.get(stack.url("gateway") + "/v1/keys/me/wraps/passphrase/"
                            "bm90LWEta2V5LWlkLW9mLWFueS13cmFw",
                            headers={"Authorization": f"Bearer {ids['access_token']}"})
        assert response.status_code == 404
        exchange = Exchange("get", "/v1/keys/me/wraps/passphrase/x", 404, response.headers)
        assert contract.drift(exchange) == []

    @pytest.mark.parametrize(("method", "template", "status"), [
        ("post", "/v1/records", "201"), ("get", "/v1/records/{record_id}", "200"),
        ("post", "/v1/files", "201"), ("get", "/v1/files/{file_id}", "200"),
        ("post", "/v1/grants", "201"), ("get", "/v1/grants/{grant_id}", "200"),
        ("get", "/v1/keyrings/{file_id}/entries", "200")])
    def test_main_response_bodies_have_examples(self, day, method, template, status):
        contract, _, _ = day
        response = contract.doc["paths"][template][method]["responses"][status]
        assert response["content"]["application/json"]["example"]
