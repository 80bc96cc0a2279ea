"""Create, upload, list, get and download a record, with real client-side encryption."""

from __future__ import annotations

import uuid

from ecrin_e2ee import RecordDecryptor
from tests.records_api.conftest import Practice, b64, unb64


class TestRoundTrip:
    async def test_create_upload_get_download_decrypt(self, practice: Practice):
        content = b"Bilan : lombalgie, EVA 6/10. " * 5000
        record = practice.encrypt(content, metadata={"kind": "bilan", "title": "Bilan initial"})
        header = record.header

        created = await practice.create(record)
        assert created.status_code == 201
        body = created.json()
        assert body["state"] == "pending" and body["current_version"] == 0
        assert body["version"]["version"] == 1 and body["version"]["committed"] is False
        assert unb64(body["version"]["header"]) == header.to_bytes()
        rid = header.record_id

        # Pending: invisible everywhere until its content is complete.
        assert (await practice.client.get(f"/v1/records/{rid}",
                                          headers=practice.headers())).status_code == 404
        listed = await practice.client.get("/v1/records", params={"file_id": str(practice.file_id)},
                                           headers=practice.headers())
        assert listed.json()["items"] == []

        assert (await practice.upload(record)).status_code == 204

        got = await practice.client.get(f"/v1/records/{rid}", headers=practice.headers())
        assert got.status_code == 200
        assert got.headers["etag"] == '"v1.k1"'
        assert got.headers["cache-control"] == "no-store"
        out = got.json()
        assert out["state"] == "committed" and out["current_version"] == 1
        assert out["version"]["key_version"] == 1
        assert out["version"]["author_id"] == str(practice.owner.id)
        assert unb64(out["version"]["metadata_ciphertext"]) == record.metadata_ciphertext

        download = await practice.client.get(f"/v1/records/{rid}/versions/1/content",
                                             headers=practice.headers())
        assert download.status_code == 200
        assert download.headers["cache-control"] == "no-store"
        assert download.headers["content-type"] == "application/octet-stream"
        assert int(download.headers["content-length"]) == len(download.content)
        assert download.content == b"".join(record.chunks)

        decryptor = RecordDecryptor(unb64(out["version"]["header"]),
                                    unb64(out["version"]["metadata_ciphertext"]),
                                    scope_key=practice.keys["clinical"],
                                    author=practice.owner.keys.public_identity())
        size = len(record.chunks[0])
        chunks = [download.content[i:i + size] for i in range(0, len(download.content), size)]
        assert b"".join(decryptor.decrypt(chunks)) == content
        assert decryptor.metadata == {"kind": "bilan", "title": "Bilan initial"}

        listed = await practice.client.get("/v1/records", params={"file_id": str(practice.file_id)},
                                           headers=practice.headers())
        assert [i["record_id"] for i in listed.json()["items"]] == [str(rid)]
        assert listed.headers["cache-control"] == "no-store"

    async def test_the_same_content_again_is_409(self, practice: Practice):
        record = await practice.add(b"note")
        again = await practice.upload(record)
        assert again.status_code == 409
        assert again.json()["type"].endswith("/version-committed")

    async def test_the_internal_token_is_forwarded_to_sharing(self, practice: Practice):
        record = practice.encrypt(b"x")
        headers = practice.headers(**{"Idempotency-Key": uuid.uuid4().hex})
        await practice.client.post("/v1/records", json=practice.body(record), headers=headers)
        assert practice.sharing.tokens[-1] == headers["x-ecrin-internal-token"]

    async def test_versions_list_and_one_version(self, practice: Practice):
        record = await practice.add(b"ordonnance")
        rid = record.header.record_id
        history = await practice.client.get(f"/v1/records/{rid}/versions",
                                            headers=practice.headers())
        assert [v["version"] for v in history.json()["items"]] == [1]
        one = await practice.client.get(f"/v1/records/{rid}/versions/1", headers=practice.headers())
        assert one.status_code == 200 and one.headers["etag"] == '"v1.k1"'
        assert one.json()["header"] == b64(record.header.to_bytes())
        assert (await practice.client.get(f"/v1/records/{rid}/versions/2",
                                          headers=practice.headers())).status_code == 404
