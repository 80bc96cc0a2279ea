"""Problem responses and transport failures become the typed errors, with their exit codes."""

from __future__ import annotations

import httpx
import pytest
from ecrin_client import (
    AuthError,
    Conflict,
    EcrinClient,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    NotLoggedIn,
    PermissionDenied,
    Profile,
    RateLimited,
    SecondFactorRequired,
    ServerError,
    SessionRevoked,
    Unavailable,
)
from ecrin_client.errors import error_from_response

from tests.client.fake_server import URL, problem


class TestProblemMapping:
    @pytest.mark.parametrize("status,slug,cls,code", [
        (401, "invalid-credentials", InvalidCredentials, 2),
        (401, "second-factor-required", SecondFactorRequired, 3),
        (403, "second-factor-required", SecondFactorRequired, 3),
        (401, "refresh-token-reused", SessionRevoked, 2),
        (401, "token-expired", AuthError, 2),
        (403, "forbidden", PermissionDenied, 2),
        (404, "not-found", NotFound, 4),
        (409, "email-taken", Conflict, 4),
        (409, "idempotency-key-reused", Conflict, 4),
        (422, "validation-error", InvalidInput, 1),
        (429, "rate-limited", RateLimited, 5),
        (503, "service-unavailable", Unavailable, 6),
        (500, "internal", ServerError, 6),
    ])
    def test_slug_and_status(self, status, slug, cls, code):
        error = error_from_response(problem(status, slug))
        assert type(error) is cls
        assert error.exit_code == code
        assert error.slug == slug

    def test_slug_wins_over_status(self):
        assert isinstance(error_from_response(problem(400, "email-taken")), Conflict)

    def test_rate_limit_carries_retry_after(self):
        error = error_from_response(problem(429, "rate-limited", {"retry-after": "42"}))
        assert isinstance(error, RateLimited)
        assert error.retry_after == 42
        assert "42" in error.message

    def test_plain_text_5xx_is_a_server_error(self):
        assert isinstance(error_from_response(httpx.Response(502, text="bad gateway")),
                          Unavailable)
        assert isinstance(error_from_response(httpx.Response(500, text="oops")), ServerError)

    def test_invalid_credentials_says_both_causes(self):
        error = error_from_response(problem(401, "invalid-credentials"))
        assert error.message == "wrong passphrase or unknown account"


class TestTransportFailures:
    async def test_unreachable_server_is_unavailable(self, tmp_path):
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        async with EcrinClient(URL, Profile(tmp_path), transport=httpx.MockTransport(refuse)
                               ) as client:
            with pytest.raises(Unavailable) as caught:
                await client.login("a@example.fr", "x" * 12)
        assert caught.value.exit_code == 6

    async def test_timeout_is_unavailable(self, tmp_path):
        def slow(request: httpx.Request) -> httpx.Response:
            raise httpx.ReadTimeout("slow", request=request)

        async with EcrinClient(URL, Profile(tmp_path), transport=httpx.MockTransport(slow)
                               ) as client:
            with pytest.raises(Unavailable, match="did not answer"):
                await client.login("a@example.fr", "x" * 12)

    async def test_a_response_off_contract_is_a_server_error(self, tmp_path):
        transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"nope": 1}))
        async with EcrinClient(URL, Profile(tmp_path), transport=transport) as client:
            with pytest.raises(ServerError):
                await client.login("a@example.fr", "x" * 12)

    async def test_authenticated_call_without_tokens_is_not_logged_in(self, tmp_path):
        transport = httpx.MockTransport(lambda r: httpx.Response(500))
        async with EcrinClient(URL, Profile(tmp_path), transport=transport) as client:
            with pytest.raises(NotLoggedIn):
                await client.whoami()

    def test_no_server_anywhere_is_invalid_input(self, tmp_path):
        with pytest.raises(InvalidInput, match="--server"):
            EcrinClient(None, Profile(tmp_path))
