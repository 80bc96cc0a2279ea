"""An integrator builds on the document alone: a Python client generated from the
gateway's ``/openapi.json`` by openapi-python-client (with no warning), and the
cryptography of ``libs/e2ee``, drive sign-up → patient → record → share; the patient then
reads and decrypts the record through the same generated client."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pyotp
import pytest

from ecrin_e2ee import (
    GrantTerms,
    IdentityKeys,
    KdfParams,
    KeyringEntry,
    Permission,
    PublicIdentity,
    RecordDecryptor,
    RecordEncryptor,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    create_account,
    derive_account_keys,
    grant_scope_keys,
    open_entry,
)
from ecrin_e2ee.keyring import seal_entry
from tests.support.users import b64, signup_payload, unb64

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
PASSPHRASE = "une phrase de passe pour le client généré"
PACKAGE = "ecrin_generated_api"


@pytest.fixture(scope="module")
def api(stack, tmp_path_factory) -> ModuleType:
    """The generated package, imported from a temporary directory."""
    root = tmp_path_factory.mktemp("generated")
    document = root / "openapi.json"
    document.write_text(json.dumps(httpx.get(stack.url("gateway") + "/openapi.json").json()))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(  # noqa: S603 (our own tool, from the environment)
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(document),
         "--output-path", str(root / PACKAGE), "--meta", "none"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))


def op(name: str) -> Any:
    """``op("records_api.records_create")``: a generated operation module."""
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def model(name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


class Account:
    """One device of one account, speaking only through the generated client."""

    def __init__(self, api: ModuleType, base_url: str, role: str) -> None:
        self.api, self.base_url, self.role = api, base_url, role
        self.account_id = uuid.uuid4()
        self.email = f"{role}-{self.account_id.hex[:10]}@example.fr"
        setup = create_account(self.account_id, PASSPHRASE, KdfParams.insecure_for_tests())
        self.identity: IdentityKeys = setup.identity_keys
        anonymous = api.Client(base_url=base_url, raise_on_unexpected_status=True)
        signed_up = op("gateway.auth_signup").sync_detailed(
            client=anonymous, body=model("SignupIn").from_dict(
                signup_payload(setup, self.email, role)),
            idempotency_key=uuid.uuid4().hex)
        assert signed_up.status_code == 202
        challenge = op("gateway.auth_challenge").sync(
            client=anonymous, body=model("ChallengeIn")(email=self.email))
        keys = derive_account_keys(PASSPHRASE, unb64(challenge.kdf.salt),
                                   KdfParams.from_json(challenge.kdf.params.to_dict()))
        signature = keys.login_signing_key.sign(unb64(challenge.challenge)).signature
        tokens = op("gateway.auth_login").sync(client=anonymous, body=model("LoginIn")(
            challenge_id=challenge.challenge_id, signature=b64(signature)))
        self.client = api.AuthenticatedClient(base_url=base_url, token=tokens.access_token,
                                              raise_on_unexpected_status=True)
        if role == "practitioner":  # a practitioner reaches patient data with TOTP only
            enrolment = op("gateway.auth_enrol_totp").sync(client=self.client)
            op("gateway.auth_confirm_totp").sync(client=self.client, body=model(
                "TotpConfirmIn")(code=pyotp.TOTP(enrolment.secret).now()))


def create_patient(owner: Account) -> tuple[uuid.UUID, dict[Scope, ScopeKey]]:
    file_id = uuid.uuid4()
    token = SearchKey.for_owner(owner.identity).name_token("Généré Dupont")
    created = op("sharing.files_create").sync_detailed(
        client=owner.client, body=model("FileCreate")(file_id=file_id, search_tokens=[token]))
    assert created.status_code == 201
    keys = {scope: ScopeKey.generate(file_id, scope) for scope in Scope}
    entries = [seal_entry(k, owner.identity.public_identity(), relationship=Relationship.OWNER,
                          permissions={Permission.READ, Permission.APPEND},
                          granter=owner.identity).to_json() for k in keys.values()]
    stored = op("kms.keyrings_create_initial").sync_detailed(
        file_id=file_id, client=owner.client,
        body=model("EntriesIn").from_dict({"entries": entries}))
    assert stored.status_code == 201
    return file_id, keys


def write_record(owner: Account, file_id: uuid.UUID, key: ScopeKey, text: bytes
                 ) -> uuid.UUID:
    record_id = uuid.uuid4()
    encryptor = RecordEncryptor(file_id=file_id, record_id=record_id, record_version=1,
                                scope_key=key, author=owner.identity,
                                metadata={"title": "Programme d'exercices"})
    content = b"".join(encryptor.encrypt((text,)))
    created = op("records_api.records_create").sync_detailed(
        client=owner.client, idempotency_key=uuid.uuid4().hex,
        body=model("RecordIn").from_dict({
            "record_id": str(record_id), "file_id": str(file_id), "scope": key.scope.value,
            "header": b64(encryptor.header.to_bytes()),
            "metadata_ciphertext": b64(encryptor.metadata_ciphertext),
            "content_length": len(content), "content": b64(content)}))
    assert created.status_code == 201
    assert created.headers["location"] == f"/v1/records/{record_id}"
    assert created.parsed.state == "committed"
    return record_id


def share(owner: Account, file_id: uuid.UUID, key: ScopeKey, patient: Account) -> None:
    entry = op("kms.directory_get_identity").sync(account_id=patient.account_id,
                                                  client=owner.client)
    grantee = PublicIdentity.from_json(entry.identity.to_dict())
    # The trust rule: the owner seals only to a key it vouches for. Here, the test made both
    # accounts, so it compares the fingerprint with the patient's own (in the practice,
    # the two would compare safety numbers).
    pinned = patient.identity.public_identity().fingerprint()
    grant_id = uuid.uuid4()
    created = op("sharing.grants_create").sync_detailed(
        client=owner.client, body=model("GrantCreate").from_dict({
            "grant_id": str(grant_id), "file_id": str(file_id),
            "grantee_id": str(patient.account_id), "relationship": "patient",
            "scopes": {"shared": "read"}}))
    assert created.status_code == 201
    entries = grant_scope_keys([key], grantee, GrantTerms(Relationship.PATIENT,
                                                          frozenset({Permission.READ})),
                               granter=owner.identity, pinned_fingerprint=pinned)
    stored = op("kms.keyrings_store_grant").sync_detailed(
        file_id=file_id, grant_id=grant_id, client=owner.client,
        body=model("EntriesIn").from_dict({"entries": [e.to_json() for e in entries]}))
    assert stored.status_code == 201


class TestAnIntegratorsClient:
    def test_sign_up_patient_record_share_and_the_patient_reads_it(self, api, stack):
        gateway = stack.url("gateway")
        kine = Account(api, gateway, "practitioner")
        patient = Account(api, gateway, "patient")
        file_id, keys = create_patient(kine)
        text = "Trois séries de dix, matin et soir.".encode()
        record_id = write_record(kine, file_id, keys[Scope.SHARED], text)
        share(kine, file_id, keys[Scope.SHARED], patient)

        mine = op("kms.keyrings_my_entries").sync(file_id=file_id, client=patient.client)
        (shared_key,) = [open_entry(KeyringEntry.from_json(e.to_dict()), patient.identity,
                                    kine.identity.public_identity())
                         for e in mine.entries]
        read = op("records_api.records_get").sync_detailed(record_id=record_id,
                                                           client=patient.client)
        assert read.status_code == 200 and read.headers["etag"] == '"v1.k1"'
        version = read.parsed.version
        decryptor = RecordDecryptor(unb64(version.header) if isinstance(version.header, str)
                                    else version.header,
                                    unb64(version.metadata_ciphertext)
                                    if isinstance(version.metadata_ciphertext, str)
                                    else version.metadata_ciphertext,
                                    scope_key=shared_key, author=kine.identity.public_identity())
        assert decryptor.metadata["title"] == "Programme d'exercices"
        content = op("records_api.records_download_content").sync_detailed(
            record_id=record_id, version=1, client=patient.client)
        assert b"".join(decryptor.decrypt([content.content])) == text

    def test_the_patient_gets_no_clinical_key(self, api, stack):
        gateway = stack.url("gateway")
        kine, patient = Account(api, gateway, "practitioner"), Account(api, gateway, "patient")
        file_id, keys = create_patient(kine)
        share(kine, file_id, keys[Scope.SHARED], patient)
        mine = op("kms.keyrings_my_entries").sync(file_id=file_id, client=patient.client)
        assert {e.to_dict()["scope"] for e in mine.entries} == {"shared"}
