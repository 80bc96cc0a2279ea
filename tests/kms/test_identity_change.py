"""The kms's rules for replacing a published identity (``kms.accounts``): only with the
gateway's step-up claim, and only for a statement signed by the published identity."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ecrin_e2ee import (
    IdentityKeys,
    KdfParams,
    KeyChange,
    RecoveryKey,
    create_account,
    derive_account_keys,
    wrap_identity,
)
from ecrin_e2ee._wire import b64e
from ecrin_platform.tokens import Principal
from tests.support.apps import Caller


@pytest.fixture
def caller(issuer) -> Caller:
    return Caller(issuer, "kms")


PASSPHRASE = "kms unit passphrase"


class Account:
    """An account made on a device, as the sign-up saga stores it."""

    def __init__(self) -> None:
        self.id = uuid.uuid4()
        setup = create_account(self.id, PASSPHRASE, KdfParams.insecure_for_tests())
        self.identity = setup.identity_keys
        self.kek = derive_account_keys(PASSPHRASE, setup.salt, setup.params).kek
        self.recovery: RecoveryKey = setup.recovery_key
        self.salt = b64e(setup.salt)
        self.setup = setup
        self.principal = Principal(str(self.id), "practitioner", second_factor=True)

    def keys_body(self) -> dict[str, Any]:
        return {"identity": self.setup.public_identity.to_json(),
                "passphrase": {"key_id": self.salt,
                               "wrap": self.setup.wrapped_by_passphrase.to_json()},
                "recovery": self.setup.wrapped_by_recovery.to_json()}

    def change_body(self, new: IdentityKeys, statement: KeyChange | None = None
                    ) -> dict[str, Any]:
        statement = statement or KeyChange.sign(self.identity, new.public_identity())
        return {"identity": new.public_identity().to_json(),
                "key_change": statement.to_json(),
                "passphrase": {"key_id": self.salt,
                               "wrap": wrap_identity(new, self.kek).to_json()},
                "recovery": wrap_identity(new, self.recovery).to_json()}


async def _signed_up(client, caller: Caller) -> Account:
    account = Account()
    response = await client.put(f"/internal/accounts/{account.id}/keys",
                                json=account.keys_body(), headers=caller.headers(system=True))
    assert response.status_code == 204, response.text
    return account


def _slug(response) -> str:
    return response.json()["type"].rsplit("/", 1)[-1]


class TestReplacingAnIdentity:
    async def test_the_public_put_never_replaces(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            other = IdentityKeys.generate(account.id).public_identity()
            response = await client.put(f"/v1/directory/{account.id}", json=other.to_json(),
                                        headers=caller.headers(account.principal))
            assert response.status_code == 403 and _slug(response) == "step-up-required"
            same = await client.put(f"/v1/directory/{account.id}",
                                    json=account.setup.public_identity.to_json(),
                                    headers=caller.headers(account.principal))
            assert same.status_code == 200 and same.json()["key_changes"] == []

    @pytest.mark.parametrize("claims", [{}, {"system": True}, {"step_up": "passphrase"}])
    async def test_the_internal_route_needs_the_step_up_claim(self, service_app, caller,
                                                              claims):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            new = IdentityKeys.generate(account.id)
            response = await client.put(f"/internal/accounts/{account.id}/identity",
                                        json=account.change_body(new),
                                        headers=caller.headers(account.principal, **claims))
            assert response.status_code == 403, response.text

    async def test_the_step_up_of_another_account_is_refused(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            intruder = await _signed_up(client, caller)
            new = IdentityKeys.generate(account.id)
            response = await client.put(
                f"/internal/accounts/{account.id}/identity", json=account.change_body(new),
                headers=caller.headers(intruder.principal, step_up="identity"))
            assert response.status_code == 403, response.text

    async def test_a_statement_signed_by_the_old_key_replaces_it(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            stale = await client.put(f"/v1/keys/me/wraps/passphrase/{'A' * 22}",
                                     json=account.setup.wrapped_by_passphrase.to_json(),
                                     headers=caller.headers(account.principal))
            assert stale.status_code == 204
            new = IdentityKeys.generate(account.id)
            body = account.change_body(new)
            step_up = caller.headers(account.principal, step_up="identity")
            response = await client.put(f"/internal/accounts/{account.id}/identity",
                                        json=body, headers=step_up)
            assert response.status_code == 200, response.text
            entry = response.json()
            assert entry["identity"] == new.public_identity().to_json()
            assert entry["key_changes"] == [{
                "previous_identity": account.setup.public_identity.to_json(),
                "statement": body["key_change"]}]
            # the wraps now hold the new keys; the earlier salt's wrap (old keys) is gone
            user = caller.headers(account.principal)
            got = await client.get(f"/v1/keys/me/wraps/passphrase/{account.salt}", headers=user)
            assert got.json() == body["passphrase"]["wrap"]
            got = await client.get("/v1/keys/me/wraps/recovery", headers=user)
            assert got.json() == body["recovery"]
            gone = await client.get(f"/v1/keys/me/wraps/passphrase/{'A' * 22}", headers=user)
            assert gone.status_code == 404
            # a retry is idempotent; the same statement cannot be replayed for another key
            again = await client.put(f"/internal/accounts/{account.id}/identity", json=body,
                                     headers=step_up)
            assert again.status_code == 200 and len(again.json()["key_changes"]) == 1
            served = await client.get(f"/v1/directory/{account.id}", headers=user)
            assert served.json()["key_changes"] == entry["key_changes"]

    async def test_a_second_change_must_be_signed_by_the_new_key(self, service_app, caller):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            step_up = caller.headers(account.principal, step_up="identity")
            second = IdentityKeys.generate(account.id)
            first = await client.put(f"/internal/accounts/{account.id}/identity",
                                     json=account.change_body(second), headers=step_up)
            assert first.status_code == 200
            third = IdentityKeys.generate(account.id)
            by_first_key = account.change_body(third)  # signed by the replaced identity
            response = await client.put(f"/internal/accounts/{account.id}/identity",
                                        json=by_first_key, headers=step_up)
            assert response.status_code == 422 and _slug(response) == "invalid-key-change"
            by_second_key = account.change_body(
                third, KeyChange.sign(second, third.public_identity()))
            response = await client.put(f"/internal/accounts/{account.id}/identity",
                                        json=by_second_key, headers=step_up)
            assert response.status_code == 200, response.text
            assert len(response.json()["key_changes"]) == 2

    @pytest.mark.parametrize("forgery", ["signed-by-new", "another-new", "another-account",
                                         "malformed", "wrong-wrap-account"])
    async def test_a_bad_statement_is_a_422_and_changes_nothing(self, service_app, caller,
                                                                forgery):
        async with service_app("kms") as client:
            account = await _signed_up(client, caller)
            new = IdentityKeys.generate(account.id)
            honest = KeyChange.sign(account.identity, new.public_identity())
            body = account.change_body(new)
            if forgery == "signed-by-new":
                body["key_change"] = KeyChange(
                    honest.account_id, honest.old_fingerprint, honest.new_fingerprint,
                    honest.changed_at, new.sign(honest.signed_bytes())).to_json()
            elif forgery == "another-new":
                other = IdentityKeys.generate(account.id).public_identity()
                body["key_change"] = KeyChange.sign(account.identity, other).to_json()
            elif forgery == "another-account":
                body["identity"] = IdentityKeys.generate(uuid.uuid4()).public_identity() \
                    .to_json()
            elif forgery == "malformed":
                body["key_change"] = {**honest.to_json(), "signature": "AAAA"}
            else:
                body["recovery"] = wrap_identity(IdentityKeys.generate(uuid.uuid4()),
                                                 account.recovery).to_json()
            response = await client.put(
                f"/internal/accounts/{account.id}/identity", json=body,
                headers=caller.headers(account.principal, step_up="identity"))
            assert response.status_code == 422, response.text
            served = await client.get(f"/v1/directory/{account.id}",
                                      headers=caller.headers(account.principal))
            assert served.json()["identity"] == account.setup.public_identity.to_json()
            assert served.json()["key_changes"] == []

    async def test_unknown_account_is_a_404(self, service_app, caller):
        async with service_app("kms") as client:
            account = Account()
            new = IdentityKeys.generate(account.id)
            response = await client.put(
                f"/internal/accounts/{account.id}/identity", json=account.change_body(new),
                headers=caller.headers(account.principal, step_up="identity"))
            assert response.status_code == 404, response.text
