"""The gateway's own calls to the kms (sign-up saga, passphrase change checks)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from ecrin_platform.observability import request_id_var
from ecrin_platform.problems import ServiceError, ServiceUnavailable
from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal
from gateway.auth.errors import AccountExists, IdentityConflict, KeyChangeRejected


class KeysRejected(ServiceError):
    status, slug, title = 422, "invalid-keys", "The kms rejected the account's keys"


class KmsClient:
    def __init__(self, http: httpx.AsyncClient, issuer: InternalTokenIssuer, base_url: str) -> None:
        self.http = http
        self.issuer = issuer
        self.base_url = base_url

    def _headers(self, step_up: Principal | None = None) -> dict[str, str]:
        rid = request_id_var.get()
        if step_up is None:
            token = self.issuer.issue("kms", request_id=rid, system=True)
        else:
            # Only this call, made right after the gateway checked a fresh passphrase proof,
            # carries the claim; the proxy never does.
            token = self.issuer.issue("kms", request_id=rid, principal=step_up,
                                      step_up="identity")
        headers = {HEADER: token}
        if rid:
            headers["x-request-id"] = rid
        return headers

    async def _call(self, method: str, path: str, json: Any = None,
                    step_up: Principal | None = None) -> httpx.Response:
        try:
            return await self.http.request(method, self.base_url + path, json=json,
                                           headers=self._headers(step_up), timeout=10.0)
        except httpx.HTTPError:
            raise ServiceUnavailable("The key service is unavailable; retry shortly.",
                                     headers={"Retry-After": "2"}) from None

    async def store_account_keys(self, account_id: uuid.UUID, body: dict[str, Any]) -> None:
        response = await self._call("PUT", f"/internal/accounts/{account_id}/keys", body)
        if response.status_code == 204:
            return
        if response.status_code == 409:
            raise AccountExists("This account id already has other keys.")
        if response.status_code == 422:
            raise KeysRejected("The identity or the wrapped keys are invalid.")
        raise ServiceUnavailable("The key service failed; retry shortly.",
                                 headers={"Retry-After": "2"})

    async def forget_account_keys(self, account_id: uuid.UUID) -> None:
        try:
            await self._call("DELETE", f"/internal/accounts/{account_id}/keys")
        except ServiceUnavailable:
            pass  # best effort: orphaned keys of a never-activated account open nothing

    async def has_passphrase_wrap(self, account_id: uuid.UUID, key_id: str) -> bool:
        response = await self._call("GET",
                                    f"/internal/accounts/{account_id}/wraps/passphrase/{key_id}")
        if response.status_code == 204:
            return True
        if response.status_code == 404:
            return False
        raise ServiceUnavailable("The key service failed; retry shortly.",
                                 headers={"Retry-After": "2"})

    async def change_identity(self, principal: Principal, body: dict[str, Any]
                              ) -> dict[str, Any]:
        """Replace the account's published identity (the kms checks the statement)."""
        response = await self._call("PUT", f"/internal/accounts/{principal.account_id}/identity",
                                    body, step_up=principal)
        if response.status_code == 200:
            result: dict[str, Any] = response.json()
            return result
        detail = _detail(response)
        if response.status_code == 422:
            raise KeyChangeRejected(detail or "The identity, statement or wraps are invalid.")
        if response.status_code in (404, 409):
            raise IdentityConflict(detail or "The identity cannot be replaced now.")
        raise ServiceUnavailable("The key service failed; retry shortly.",
                                 headers={"Retry-After": "2"})


def _detail(response: httpx.Response) -> str | None:
    """The kms's own explanation of a refusal (its problem's ``detail``), if any."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    return detail if isinstance(detail, str) and len(detail) <= 300 else None
