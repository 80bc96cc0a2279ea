"""Token and request abuse against the real gateway and services (threat 4 of DESIGN.md):
whatever an attacker sends gets a clear 4xx problem, never a 5xx, never another user's data.

JWT attacks already in tests/e2e/test_auth_api.py (alg none, HS256 with the public key,
expiry, nbf, audience, issuer, unknown kid, foreign key, internal token as access token)
are not repeated; this file adds the ones missing there.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal, generate_keypair_pem
from tests.adversarial.rawhttp import send
from tests.adversarial.world import World

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def assert_problem(status: int, headers, body: bytes, allowed: set[int] | None = None) -> None:
    assert 400 <= status < 500, f"{status}: {body[:300]!r}"
    if allowed is not None:
        assert status in allowed, f"{status}: {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), \
        f"{status} {headers.get('content-type')}: {body[:200]!r}"
    problem = json.loads(body)
    assert problem["status"] == status and problem["type"].startswith("https://")


def problem(response: httpx.Response, allowed: set[int] | None = None) -> None:
    assert_problem(response.status_code, response.headers, response.content, allowed)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_key(stack) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(
        (stack.state / "keys" / "access-token.key").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def internal_issuer(stack) -> InternalTokenIssuer:
    return InternalTokenIssuer((stack.state / "keys" / "internal-token.key").read_bytes())


# -- access tokens ---------------------------------------------------------------


class TestAccessTokenAbuse:
    def _me(self, world: World, token: str, **headers: str) -> httpx.Response:
        return httpx.get(world.gateway + "/v1/auth/me",
                         headers={"Authorization": f"Bearer {token}", **headers})

    def _claims(self, world: World) -> dict:
        return jwt.decode(world.kine_b.tokens["access_token"], options={"verify_signature": False})

    def test_payload_swapped_under_a_genuine_signature(self, world):
        header, _, signature = world.kine_b.tokens["access_token"].split(".")
        claims = self._claims(world)
        claims["sub"] = str(world.kine_a.account_id)
        forged = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
        problem(self._me(world, forged), {401})

    def test_embedded_jwk_header_is_not_trusted(self, world):
        attacker = Ed25519PrivateKey.generate()
        public = attacker.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)
        kid = jwt.get_unverified_header(world.kine_b.tokens["access_token"])["kid"]
        claims = {**self._claims(world), "sub": str(world.kine_a.account_id)}
        for extra in ({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(public)}},
                      {"jku": "http://127.0.0.1:1/jwks.json"},
                      {"x5u": "http://127.0.0.1:1/cert.pem"}):
            token = jwt.encode(claims, attacker, algorithm="EdDSA",
                               headers={"kid": kid, **extra})
            problem(self._me(world, token), {401})

    def test_real_key_but_no_expiry_or_no_session(self, stack, world):
        key = access_key(stack)
        kid = jwt.get_unverified_header(world.kine_b.tokens["access_token"])["kid"]
        base = self._claims(world)
        for drop in ("exp", "sid", "sub", "aud", "iss"):
            claims = {k: v for k, v in base.items() if k != drop}
            token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})
            problem(self._me(world, token), {401})

    def test_real_key_with_a_sid_of_another_account(self, stack, world):
        """A token naming account B with account A's live session: the session check ties
        the two together."""
        key = access_key(stack)
        kid = jwt.get_unverified_header(world.kine_b.tokens["access_token"])["kid"]
        claims = {**self._claims(world), "sid": world.kine_a_session}
        token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})
        problem(self._me(world, token), {401})

    def test_truncated_signature_and_garbage(self, world):
        token = world.kine_b.tokens["access_token"]
        for bad in (token[:-4], token + "AAAA", token.replace(".", "..", 1), "a.b.c",
                    "x" * 8000, token.split(".")[0] + ".."):
            problem(self._me(world, bad), {401})

    def test_token_outside_the_authorization_header_is_ignored(self, world):
        token = world.kine_b.tokens["access_token"]
        problem(httpx.get(world.gateway + "/v1/auth/me", params={"access_token": token}), {401})
        problem(httpx.get(world.gateway + "/v1/auth/me",
                          headers={"Cookie": f"access_token={token}"}), {401})
        problem(httpx.get(world.gateway + "/v1/auth/me",
                          headers={"Authorization": f"Basic {token}"}), {401})

    def test_two_authorization_headers(self, world):
        response = send(world.gateway, "GET", "/v1/auth/me", [
            ("Authorization", "Bearer " + world.kine_b.tokens["access_token"]),
            ("Authorization", "Bearer " + world.kine_a.tokens["access_token"])])
        assert response is not None
        if response.status == 200:
            # Whichever one wins, it is one genuine identity, never a mix.
            assert response.json()["account"]["id"] in {str(world.kine_a.account_id),
                                                          str(world.kine_b.account_id)}
        else:
            assert_problem(response.status, response.headers, response.body, {400, 401})


# -- internal tokens ---------------------------------------------------------------


class TestInternalTokens:
    SERVICES = ("records-api", "kms", "sharing")

    def _probe_path(self, service: str, world: World) -> str:
        return {"records-api": f"/v1/records?file_id={world.file_b}",
                "kms": f"/v1/keyrings/{world.file_b}/entries",
                "sharing": f"/v1/files/{world.file_b}"}[service]

    def test_a_token_for_one_service_is_refused_by_the_others(self, stack, world):
        issuer = internal_issuer(stack)
        principal = Principal(str(world.kine_b.account_id), "practitioner", second_factor=True)
        for audience in (*self.SERVICES, "gateway"):
            token = issuer.issue(audience, principal=principal)
            for target in self.SERVICES:
                response = httpx.get(stack.url(target) + self._probe_path(target, world),
                                     headers={HEADER: token})
                if target == audience:
                    assert response.status_code == 200, (audience, response.text)
                else:
                    problem(response, {401})

    def test_expired_long_lived_and_foreign_internal_tokens(self, stack, world):
        private = serialization.load_pem_private_key(
            (stack.state / "keys" / "internal-token.key").read_bytes(), password=None)
        kid = jwt.get_unverified_header(internal_issuer(stack).issue("sharing"))["kid"]
        now = int(time.time())
        base = {"iss": "ecrin-gateway", "aud": "sharing", "jti": uuid.uuid4().hex,
                "sub": str(world.kine_b.account_id), "role": "practitioner", "amr2": True}
        cases = [
            {**base, "iat": now - 120, "nbf": now - 120, "exp": now - 60},     # expired
            {**base, "iat": now, "nbf": now, "exp": now + 3600},               # > 60 s
            {**base, "iat": now, "nbf": now + 600, "exp": now + 630},          # not yet
            {**base, "iss": "someone", "iat": now, "nbf": now, "exp": now + 30},
        ]
        url = stack.url("sharing") + f"/v1/files/{world.file_b}"
        for claims in cases:
            token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid})
            problem(httpx.get(url, headers={HEADER: token}), {401})
        other = serialization.load_pem_private_key(generate_keypair_pem()[0], password=None)
        token = jwt.encode({**base, "iat": now, "nbf": now, "exp": now + 30}, other,
                           algorithm="EdDSA", headers={"kid": kid})
        problem(httpx.get(url, headers={HEADER: token}), {401})
        problem(httpx.get(url), {401})

    def test_an_access_token_is_not_an_internal_token(self, stack, world):
        token = world.kine_b.tokens["access_token"]
        for service in self.SERVICES:
            response = httpx.get(stack.url(service) + self._probe_path(service, world),
                                 headers={HEADER: token, "Authorization": f"Bearer {token}"})
            problem(response, {401})


class TestClientSuppliedInternalHeaders:
    def test_an_internal_token_sent_by_a_client_is_stripped(self, stack, world):
        """B holds a genuine internal token naming A (say, leaked from a log): the gateway
        drops it and speaks for B only."""
        token_as_a = internal_issuer(stack).issue(
            "sharing", principal=Principal(str(world.kine_a.account_id), "practitioner",
                                           second_factor=True))
        for headers in ({HEADER: token_as_a}, {HEADER.upper(): token_as_a},
                        {"X-Ecrin-Caller": "records-api", HEADER: token_as_a},
                        {"X-Ecrin-Account": str(world.kine_a.account_id)},
                        {"X-Forwarded-For": "10.0.0.1", "X-Real-IP": "10.0.0.1",
                         "Forwarded": "for=10.0.0.1"}):
            response = httpx.get(f"{world.gateway}/v1/files/{world.file_a}",
                                 headers={**world.kine_b.headers, **headers})
            problem(response, {404})
            listed = httpx.get(f"{world.gateway}/v1/files",
                               headers={**world.kine_b.headers, **headers}).json()
            assert [f["id"] for f in listed["items"]] == [str(world.file_b)]

    def test_an_internal_token_without_a_bearer_is_still_unauthenticated(self, stack, world):
        token_as_a = internal_issuer(stack).issue(
            "sharing", principal=Principal(str(world.kine_a.account_id), "practitioner",
                                           second_factor=True))
        problem(httpx.get(f"{world.gateway}/v1/files/{world.file_a}",
                          headers={HEADER: token_as_a}), {401})

    def test_a_request_id_cannot_inject_lines(self, world):
        response = send(world.gateway, "GET", "/v1/auth/me",
                        [("X-Request-ID", "abc\tdef ghi%0d%0aSet-Cookie: x=y")])
        assert response is not None and response.status < 500
        assert "set-cookie" not in response.headers


# -- paths ---------------------------------------------------------------

PATH_TRICKS = [
    "/v1/files/../auth/me", "/v1/files/%2e%2e/auth/me", "/v1/files/%2E%2E/auth/me",
    "/v1/files/..%2fauth%2fme", "/v1/files/%2fauth", "/v1/files/%252e%252e/auth/me",
    "/v1/files/%252fauth", "/v1/files//{file_a}", "/v1/files/{file_a}%00",
    "/v1/files/{file_a}%2f..%2f..%2fauth%2fme", "/v1/records/..%5cauth", "/v1/files/.%2e/",
    "/v1/records/%2e%2e/%2e%2e/internal/access/{file_a}/{kine_a}",
    "/v1/files/..;/internal/access/{file_a}/{kine_a}", "/v1/../internal/access/{file_a}/{kine_a}",
    "/internal/access/{file_a}/{kine_a}", "/v1/internal/access/{file_a}/{kine_a}",
    "/v1//files/{file_a}", "/v1/files/{file_a}/./members", "/v1/files/{file_a}/%2e/members",
    "/V1/files/{file_a}", "/v1/FILES/{file_a}", "/v1/files/{file_a}/", "/v1/files/{file_a}?x=%00",
    "/v1/files/{file_a}#frag", "/v1/files/%u002e%u002e/auth/me",
    "/v1/records/%ff%fe", "/v1/files/{file_a};jsessionid=1",
]


class TestTrailingSlash:
    def test_no_redirect_to_an_internal_address(self, stack, world):
        """Regression: ``/v1/files/{id}/`` was a 307 to http://127.0.0.1:<sharing port>/...,
        naming an internal host and sending clients (and their tokens) there."""
        for path in (f"/v1/files/{world.file_a}/", "/v1/records/", "/v1/files/",
                     f"/v1/keyrings/{world.file_a}/entries/"):
            response = httpx.get(world.gateway + path, headers=world.kine_a.headers)
            problem(response, {404, 405})
            assert "location" not in response.headers
            for service in ("records-api", "kms", "sharing"):
                assert str(stack.ports[service]) not in response.text


class TestPathTricks:
    @pytest.mark.parametrize("template", PATH_TRICKS)
    def test_no_trick_reaches_foreign_data_or_a_5xx(self, world, template):
        target = template.format(file_a=world.file_a, kine_a=world.kine_a.account_id)
        response = send(world.gateway, "GET", target, [("Authorization", "Bearer "
                                                        + world.kine_b.tokens["access_token"])])
        assert response is not None, "the gateway closed the connection"
        assert response.status < 500, (target, response.status, response.body[:200])
        if response.status == 200:
            # Only a route legitimately answering for B (e.g. its own /auth/me).
            text = response.body.decode()
            assert str(world.file_a) not in text and str(world.kine_a.account_id) not in text
        else:
            assert_problem(response.status, response.headers, response.body)


# -- bodies and headers ---------------------------------------------------------------


class TestOversizedAndHostileInput:
    def test_body_over_the_limit_is_413(self, world):
        big = json.dumps({"file_id": str(uuid.uuid4()),
                          "search_tokens": ["A" * 22] * 80_000}).encode()
        assert len(big) > 1024 * 1024
        response = httpx.post(world.gateway + "/v1/files", content=big,
                              headers={**world.kine_b.headers,
                                       "Content-Type": "application/json"})
        problem(response, {413})

    def test_chunked_body_over_the_limit_is_413(self, world):
        def chunks():
            yield b'{"file_id": "' + str(uuid.uuid4()).encode() + b'", "search_tokens": ["'
            for _ in range(40):
                yield b"A" * 65536
            yield b'"]}'

        response = httpx.post(world.gateway + "/v1/files", content=chunks(),
                              headers={**world.kine_b.headers,
                                       "Content-Type": "application/json"})
        problem(response, {413})

    def test_content_length_larger_than_the_body(self, world):
        response = send(world.gateway, "POST", "/v1/auth/challenge",
                        [("Content-Type", "application/json"), ("Content-Length", "5000")],
                        b'{"email": "a@b.fr"}', timeout=20)
        assert response is None or response.status < 500

    @pytest.mark.parametrize("depth", [64, 1_000, 100_000])
    def test_deeply_nested_json(self, world, depth):
        nested = b"[" * depth + b"]" * depth
        for path, who in (("/v1/auth/challenge", None), ("/v1/files", world.kine_b),
                          ("/v1/grants", world.kine_b), ("/v1/records", world.kine_b)):
            headers = {"Content-Type": "application/json", "Idempotency-Key": "nested-json-1"}
            if who:
                headers.update(who.headers)
            body = b'{"email": ' + nested + b"}" if path.endswith("challenge") else \
                b'{"file_id": ' + nested + b"}"
            response = httpx.post(world.gateway + path, content=body, headers=headers)
            problem(response, {400, 413, 422})

    @pytest.mark.parametrize("body", [b"", b"{", b"null", b"[]", b'"x"', b"\xff\xfe",
                                      b'{"email": "\\ud800"}', b'{"email": 1e999999}',
                                      b'{"email": "a@b.fr", "email": "c@d.fr", "x": NaN}'])
    def test_malformed_json(self, world, body):
        response = httpx.post(world.gateway + "/v1/auth/challenge", content=body,
                              headers={"Content-Type": "application/json"})
        assert response.status_code < 500, response.text
        if response.status_code != 200:
            problem(response)

    def test_wrong_content_type(self, world):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                      "application/xml"):
            response = httpx.post(world.gateway + "/v1/files", content=b"file_id=x",
                                  headers={**world.kine_b.headers, "Content-Type": ctype})
            problem(response, {400, 415, 422})

    @pytest.mark.parametrize("size", [20_000, 70_000, 1_100_000])
    def test_huge_header(self, world, size):
        """Regression: httptools sets no bound; a 1.1 MB header reached the routes (200)."""
        response = send(world.gateway, "GET", f"/v1/files/{world.file_b}",
                        [("Authorization", "Bearer " + world.kine_b.tokens["access_token"]),
                         ("X-Padding", "a" * size)])
        assert response is not None
        assert_problem(response.status, response.headers, response.body, {431})

    def test_ordinary_large_headers_still_pass(self, world):
        response = send(world.gateway, "GET", f"/v1/files/{world.file_b}",
                        [("Authorization", "Bearer " + world.kine_b.tokens["access_token"]),
                         ("X-Padding", "a" * 8_000)])
        assert response is not None and response.status == 200

    def test_many_headers(self, world):
        response = send(world.gateway, "GET", "/v1/auth/me",
                        [(f"X-H{i}", "v") for i in range(2000)])
        assert response is not None
        assert_problem(response.status, response.headers, response.body, {431})

    def test_overlong_url(self, world):
        response = send(world.gateway, "GET", "/v1/files/" + "a" * 100_000)
        assert response is None or 400 <= response.status < 500


# -- method override, CORS ---------------------------------------------------------------

OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


class TestMethodOverride:
    def test_a_get_never_becomes_a_delete(self, world):
        grant = world.grant_secretary_a
        for header in OVERRIDES:
            response = httpx.get(f"{world.gateway}/v1/grants/{grant}",
                                 headers={**world.kine_a.headers, header: "DELETE"})
            assert response.status_code == 200
            assert response.json()["status"] == "active"
            response = httpx.post(f"{world.gateway}/v1/grants/{grant}",
                                  headers={**world.kine_a.headers, header: "DELETE"})
            problem(response, {405})
            response = httpx.get(f"{world.gateway}/v1/grants/{grant}?_method=DELETE",
                                 headers=world.kine_a.headers)
            assert response.json()["status"] == "active"
        assert world.secretary_a.get(f"/v1/files/{world.file_a}").status_code == 200

    def test_unknown_and_trace_methods(self, world):
        for method in ("TRACE", "CONNECT", "PROPFIND", "FOO"):
            response = send(world.gateway, method, f"/v1/files/{world.file_a}",
                            [("Authorization", "Bearer " + world.kine_a.tokens["access_token"])])
            assert response is None or 400 <= response.status < 500, (method, response)
            if response is not None:
                assert str(world.file_a).encode() not in response.body or method == "FOO"


class TestCors:
    def test_no_allow_origin_for_an_unknown_origin(self, world):
        origin = "https://evil.example"
        preflight = httpx.options(f"{world.gateway}/v1/files", headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code < 500
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-credentials" not in preflight.headers
        for path in ("/v1/files", "/v1/auth/me", "/openapi.json", "/v1/auth/challenge"):
            response = httpx.get(world.gateway + path,
                                 headers={**world.kine_a.headers, "Origin": origin})
            assert "access-control-allow-origin" not in response.headers, path
            assert "access-control-allow-credentials" not in response.headers, path


# -- no-store on health data ---------------------------------------------------------------


def _owner_gets(world: World) -> dict[str, str]:
    """Every GET route, filled with practice A's ids, called by its owner."""
    record = world.records_a["clinical"].record_id
    return {
        "/v1/auth/me": "/v1/auth/me", "/v1/auth/audit": "/v1/auth/audit",
        "/v1/auth/sessions": "/v1/auth/sessions",
        "/v1/records": f"/v1/records?file_id={world.file_a}",
        "/v1/records/audit": f"/v1/records/audit?file_id={world.file_a}",
        "/v1/records/headers": f"/v1/records/headers?file_id={world.file_a}&scope=clinical",
        "/v1/records/{record_id}": f"/v1/records/{record}",
        "/v1/records/{record_id}/versions": f"/v1/records/{record}/versions",
        "/v1/records/{record_id}/versions/{version}": f"/v1/records/{record}/versions/1",
        "/v1/records/{record_id}/versions/{version}/content":
            f"/v1/records/{record}/versions/1/content",
        "/v1/directory/{account_id}": f"/v1/directory/{world.kine_a.account_id}",
        "/v1/keys/me/wraps/passphrase/{key_id}":
            f"/v1/keys/me/wraps/passphrase/{world.kine_a_salt}",
        "/v1/keys/me/unlock/{key_id}": f"/v1/keys/me/unlock/{world.kine_a_salt}",
        "/v1/keys/me/wraps/recovery": "/v1/keys/me/wraps/recovery",
        "/v1/keyrings/{file_id}/entries": f"/v1/keyrings/{world.file_a}/entries",
        "/v1/keyrings/{file_id}/audit": f"/v1/keyrings/{world.file_a}/audit",
        "/v1/files": "/v1/files", "/v1/files/{file_id}": f"/v1/files/{world.file_a}",
        "/v1/files/{file_id}/members": f"/v1/files/{world.file_a}/members",
        "/v1/files/{file_id}/audit": f"/v1/files/{world.file_a}/audit",
        "/v1/grants": f"/v1/grants?file_id={world.file_a}",
        "/v1/grants/{grant_id}": f"/v1/grants/{world.grant_secretary_a}",
        "/v1/invitations": f"/v1/invitations?file_id={world.file_a}",
        "/v1/invitations/lookup/{lookup_id}":
            f"/v1/invitations/lookup/{world.invitation_code_a.lookup_id()}",
        "/v1/rotations": f"/v1/rotations?file_id={world.file_a}",
    }


#: GET routes that carry no account or patient data (constants, descriptions).
NO_DATA = {"/v1/records/service-info", "/v1/keys/service-info", "/v1/files/service-info",
           "/v1/grants/defaults"}


class TestNoStore:
    def test_every_get_route_with_data_says_no_store(self, world):
        merged = httpx.get(world.gateway + "/openapi.json").json()
        gets = sorted(p for p, ops in merged["paths"].items() if "get" in ops)
        filled = _owner_gets(world)
        missing = [p for p in gets if p not in filled and p not in NO_DATA]
        assert not missing, f"no coverage for GET {missing}"
        bad = []
        for template in gets:
            if template in NO_DATA:
                continue
            response = httpx.get(world.gateway + filled[template], headers=world.kine_a.headers)
            assert response.status_code == 200, (template, response.text[:200])
            if "no-store" not in response.headers.get("cache-control", ""):
                bad.append(template)
        assert not bad, f"responses with health or account data but no no-store: {bad}"

    def test_refusals_and_auth_answers_say_no_store(self, world):
        # A refused read also says no-store: a 404 cached by a proxy would outlive a grant.
        for path in (f"/v1/records/{world.records_a['clinical'].record_id}",
                     f"/v1/files/{world.file_a}", f"/v1/keyrings/{world.file_a}/entries"):
            response = httpx.get(world.gateway + path, headers=world.kine_b.headers)
            assert response.status_code == 404
            assert "no-store" in response.headers.get("cache-control", ""), path
        response = world.kine_a.post("/v1/auth/refresh",
                                     json={"refresh_token": "not-a-token-at-all-0000"})
        problem(response, {401})
        assert "no-store" in response.headers.get("cache-control", "")
        login = httpx.post(world.gateway + "/v1/auth/challenge",
                           json={"email": world.kine_a.email})
        assert "no-store" in login.headers.get("cache-control", ""), login.headers


class TestMetrics:
    def test_metrics_carry_no_identifier(self, stack, world):
        for service in ("gateway", "records-api", "kms", "sharing"):
            text = httpx.get(stack.metrics_url(service)).text  # the metrics listener
            assert "http_requests_total" in text
            for secret in world.secrets():
                assert secret not in text, (service, secret)


class TestFuzzRegressions:
    """Failures schemathesis found, each fixed in the service named."""

    def test_a_non_ascii_header_value_is_relayed_not_a_500(self, world):
        """gateway/proxy.py decoded headers to str and httpx could not re-encode them."""
        for header in ("Idempotency-Key", "X-Anything", "If-Match"):
            response = send(world.gateway, "POST", "/v1/records", [
                ("Authorization", "Bearer " + world.kine_b.tokens["access_token"]),
                ("Content-Type", "application/json"), (header, "clé-é-é-é-é")],
                b'{"file_id": "' + str(world.file_b).encode() + b'"}')
            assert response is not None
            assert_problem(response.status, response.headers, response.body)

    def test_directory_timestamps_carry_their_zone(self, world):
        """kms returned SQLite's naive datetimes: not an RFC 3339 date-time."""
        from datetime import datetime

        got = world.kine_b.get(f"/v1/directory/{world.kine_a.account_id}").json()
        assert datetime.fromisoformat(got["updated_at"]).tzinfo is not None

    def test_a_gateway_route_with_another_method_is_405_with_allow(self, world):
        """The catch-all proxy route answered 404 (PUT /v1/auth/me) or advertised its own
        five methods on every path."""
        response = httpx.put(world.gateway + "/v1/auth/me", headers=world.kine_b.headers)
        problem(response, {405})
        assert response.headers["allow"] == "GET"
        response = httpx.request("TRACE", f"{world.gateway}/v1/grants/{world.grant_secretary_a}",
                                 headers=world.kine_a.headers)
        problem(response, {405})
        # Every method of the path (Starlette named the first matching route's only, GET),
        # never the proxy's.
        assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}

    def test_a_word_where_an_id_goes_is_not_a_422_on_another_method(self, world):
        """DELETE /v1/grants/defaults reached DELETE /v1/grants/{grant_id} (422)."""
        response = httpx.delete(world.gateway + "/v1/grants/defaults",
                                headers=world.kine_a.headers)
        problem(response, {405})

    def test_an_idempotent_file_retry_is_a_documented_200(self, world):
        doc = httpx.get(world.gateway + "/openapi.json").json()
        assert "200" in doc["paths"]["/v1/files"]["post"]["responses"]
