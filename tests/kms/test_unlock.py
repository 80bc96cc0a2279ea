"""``GET /v1/keys/me/unlock/{key_id}``: the passphrase wrap and one's own directory entry
in one answer (login in three requests, issue 21), with the same rules as the two routes
it stands for."""

from __future__ import annotations

import pytest

from ecrin_e2ee import IdentityKeys, WrappedIdentity, unwrap_identity
from ecrin_e2ee._wire import b64e
from ecrin_platform.tokens import Principal
from tests.kms.test_identity_change import Account, _signed_up, _slug
from tests.support.apps import Caller


@pytest.fixture
def caller(issuer) -> Caller:
    return Caller(issuer, "kms")


class TestUnlock:
    async def test_the_wrap_and_the_entry_the_two_routes_serve(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            user = caller.headers(account.principal)
            response = await client.get(f"/v1/keys/me/unlock/{account.salt}", headers=user)
            assert response.status_code == 200, response.text
            body = response.json()
            wrap = await client.get(f"/v1/keys/me/wraps/passphrase/{account.salt}",
                                    headers=user)
            entry = await client.get(f"/v1/directory/{account.id}", headers=user)
            assert body == {"wrap": wrap.json(), "directory": entry.json()}
            opened = unwrap_identity(WrappedIdentity.from_json(body["wrap"]), account.kek)
            assert opened.public_identity().to_json() == body["directory"]["identity"]

    async def test_after_a_change_it_serves_the_new_keys_and_the_history(self, service_app,
                                                                          caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            new = IdentityKeys.generate(account.id)
            changed = await client.put(f"/internal/accounts/{account.id}/identity",
                                       json=account.change_body(new),
                                       headers=caller.headers(account.principal,
                                                              step_up="identity"))
            assert changed.status_code == 200, changed.text
            body = (await client.get(f"/v1/keys/me/unlock/{account.salt}",
                                     headers=caller.headers(account.principal))).json()
            opened = unwrap_identity(WrappedIdentity.from_json(body["wrap"]), account.kek)
            assert opened.public_identity().to_json() == new.public_identity().to_json()
            assert body["directory"]["identity"] == new.public_identity().to_json()
            assert len(body["directory"]["key_changes"]) == 1

    async def test_an_unknown_salt_is_a_404(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            response = await client.get(f"/v1/keys/me/unlock/{b64e(bytes(16))}",
                                        headers=caller.headers(account.principal))
            assert response.status_code == 404
            assert response.headers["content-type"].startswith("application/problem+json")

    async def test_only_ones_own_keys(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            other = Account()  # no keys stored: the caller names its own account only
            response = await client.get(f"/v1/keys/me/unlock/{account.salt}",
                                        headers=caller.headers(other.principal))
            assert response.status_code == 404

    async def test_a_recovery_session_is_refused(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            recovery = Principal(str(account.id), "practitioner", session_kind="recovery")
            response = await client.get(f"/v1/keys/me/unlock/{account.salt}",
                                        headers=caller.headers(recovery))
            assert response.status_code == 403, response.text
            assert _slug(response) == "forbidden"

    async def test_a_malformed_key_id_is_a_422(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            response = await client.get("/v1/keys/me/unlock/a.b", headers=caller.headers(
                account.principal))
            assert response.status_code == 422
