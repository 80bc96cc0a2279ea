"""Locust users that behave as the real client: an account made on the device with
``ecrin_e2ee``, a login by signed challenge (and TOTP), a patient file whose keyring is
sealed on the device, then encrypted records written, listed, downloaded and decrypted.

Run by ``tests/adversarial/load.py`` (``make load``, ``make soak``); every request goes
through the real gateway.
"""

from __future__ import annotations

import random
import uuid

import pyotp
from locust import HttpUser, between, task

from ecrin_e2ee import (
    EncryptedRecord,
    KdfParams,
    Permission,
    RecordHeader,
    Relationship,
    Scope,
    ScopeKey,
    SearchKey,
    create_account,
    derive_account_keys,
    encrypt_record,
    open_record,
)
from ecrin_e2ee.keyring import seal_entry
from tests.support.users import b64, signup_payload, unb64

PASSPHRASE = "load test passphrase"
CHUNK = 65536 + 17


class Practitioner(HttpUser):
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.account_id = uuid.uuid4()
        self.email = f"load-{self.account_id.hex[:12]}@example.fr"
        setup = create_account(self.account_id, PASSPHRASE, KdfParams.insecure_for_tests())
        self.identity = setup.identity_keys
        self.client.post("/v1/auth/signup", json=signup_payload(setup, self.email,
                                                                 "practitioner"),
                         headers={"Idempotency-Key": uuid.uuid4().hex}, name="signup")
        self.login()
        enrolment = self.client.post("/v1/auth/2fa/totp", headers=self.auth,
                                     name="2fa enrol").json()
        self.totp = pyotp.TOTP(enrolment["secret"])
        self.client.post("/v1/auth/2fa/totp/confirm", json={"code": self.totp.now()},
                         headers=self.auth, name="2fa confirm")
        self.file_id = uuid.uuid4()
        token = SearchKey.for_owner(self.identity).name_token("Durand")
        self.client.post("/v1/files", json={"file_id": str(self.file_id),
                                            "search_tokens": [token]},
                         headers=self.auth, name="create file")
        self.keys = {scope: ScopeKey.generate(self.file_id, scope) for scope in Scope}
        entries = [seal_entry(k, self.identity.public_identity(), relationship=Relationship.OWNER,
                              permissions={Permission.READ, Permission.APPEND},
                              granter=self.identity).to_json() for k in self.keys.values()]
        self.client.put(f"/v1/keyrings/{self.file_id}/initial", json={"entries": entries},
                        headers=self.auth, name="store keyring")
        self.records: list[tuple[str, bytes]] = []

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    def login(self) -> None:
        challenge = self.client.post("/v1/auth/challenge", json={"email": self.email},
                                     name="challenge").json()
        keys = derive_account_keys(PASSPHRASE, unb64(challenge["kdf"]["salt"]),
                                   KdfParams.from_json(challenge["kdf"]["params"]))
        body = {"challenge_id": challenge["challenge_id"],
                "signature": b64(keys.login_signing_key.sign(
                    unb64(challenge["challenge"])).signature)}
        if getattr(self, "totp", None) is not None:
            body["totp_code"] = self.totp.now()
        self.tokens = self.client.post("/v1/auth/login", json=body, name="login").json()

    @task(4)
    def write_record(self) -> None:
        record_id = uuid.uuid4()
        plain = random.randbytes(random.choice((200, 4000, 20000)))  # noqa: S311
        enc = encrypt_record(plain, {"kind": "session_note", "title": "séance"},
                             file_id=self.file_id, record_id=record_id, record_version=1,
                             scope_key=self.keys[Scope.CLINICAL], author=self.identity)
        content = b"".join(enc.chunks)
        created = self.client.post("/v1/records", name="create record", headers={
            **self.auth, "Idempotency-Key": uuid.uuid4().hex}, json={
            "record_id": str(record_id), "file_id": str(self.file_id), "scope": "clinical",
            "header": b64(enc.header.to_bytes()),
            "metadata_ciphertext": b64(enc.metadata_ciphertext),
            "content_length": len(content)})
        if created.status_code != 201:
            return
        uploaded = self.client.put(f"/v1/records/{record_id}/versions/1/content",
                                   data=content, name="upload content",
                                   headers={**self.auth,
                                            "Content-Type": "application/octet-stream"})
        if uploaded.status_code == 204:
            self.records.append((str(record_id), plain))

    @task(6)
    def read_record(self) -> None:
        if not self.records:
            return
        record_id, plain = random.choice(self.records)  # noqa: S311
        with self.client.get(f"/v1/records/{record_id}", headers=self.auth,
                             name="get record", catch_response=True) as meta:
            if meta.status_code != 200:
                meta.failure(f"{meta.status_code}")
                return
        version = meta.json()["version"]
        with self.client.get(f"/v1/records/{record_id}/versions/1/content", headers=self.auth,
                             name="download content", catch_response=True) as content:
            body = content.content
            chunks = tuple(body[i:i + CHUNK] for i in range(0, len(body), CHUNK))
            try:
                opened = open_record(
                    EncryptedRecord(RecordHeader.from_bytes(unb64(version["header"])),
                                    unb64(version["metadata_ciphertext"]), chunks),
                    scope_key=self.keys[Scope.CLINICAL],
                    author=self.identity.public_identity())
            except Exception as exc:  # noqa: BLE001
                content.failure(f"does not decrypt: {type(exc).__name__}")
                return
            if opened.content != plain:
                content.failure("other plaintext")

    @task(2)
    def list_records(self) -> None:
        self.client.get("/v1/records", params={"file_id": str(self.file_id), "limit": 20},
                        headers=self.auth, name="list records")

    @task(2)
    def keyring(self) -> None:
        self.client.get(f"/v1/keyrings/{self.file_id}/entries", headers=self.auth,
                        name="keyring entries")

    @task(1)
    def files(self) -> None:
        self.client.get("/v1/files", headers=self.auth, name="list files")

    @task(1)
    def refresh(self) -> None:
        response = self.client.post("/v1/auth/refresh", name="refresh",
                                    json={"refresh_token": self.tokens["refresh_token"]})
        if response.status_code == 200:
            self.tokens = response.json()
