"""Listing patients by the fast path, across implementations, through the real services.

Both SDKs name a new file's identity record in the file (``identity_record_id``), so a list
of patients is two batch requests per page of files (``POST /v1/keyrings/batch`` and
``POST /v1/records/batch``), not a record listing, a keyring fetch and a read per file. One
account on two devices (Python and TypeScript) creates patients on each; each device then
lists all of them, and the requests it made show the fast path was taken for every file.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from ecrin_client.kine import PatientIdentity

from tests.e2ee_js.cross_devices import PyDevice, kdf_env

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PY_NAMES = ["Anne Pyrot", "Bruno Pyrot", "Chloé Pyrot"]
TS_NAMES = ["Denis Tessier", "Emma Tessier", "Farid Tessier"]
UUID = "[0-9a-f-]{36}"
#: What the old way costs per file: the record listing, a keyring fetch, a record read.
PER_FILE = re.compile(rf"^GET /v1/(records/{UUID}|keyrings/{UUID}/entries)$|^GET /v1/records$")


@pytest.fixture(scope="module", autouse=True)
def _cheap_kdf() -> None:
    kdf_env()


@pytest.fixture(scope="module")
def devices(stack, tmp_path_factory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("pages")
    py = PyDevice.signup(stack.url("gateway"), home / "py")

    async def create(records):
        patients = py.patients(records)
        return [(await patients.create(PatientIdentity(
            name=name, birth_date=dt.date(1990, 1, 2 + i)))).file_id
            for i, name in enumerate(PY_NAMES)]

    py_files = py.run(create)
    ts = py.second_device(home / "ts")
    ts_created = [ts.run("create-patient", name=name, birth_date=f"1991-03-0{i + 1}")
                  for i, name in enumerate(TS_NAMES)]
    return {"py": py, "ts": ts, "py_files": py_files, "ts_created": ts_created}


def python_listing(py: PyDevice) -> tuple[list[Any], list[str], dict[str, str]]:
    """The Python device lists every patient; the requests it made; what GET /v1/files says
    each file names as its identity record."""
    requests: list[str] = []

    async def go(records):
        transport = records.client.transport
        real = transport.request

        async def recording(method: str, path: str, **kwargs: Any):
            requests.append(f"{method} {path}")
            return await real(method, path, **kwargs)

        transport.request = recording
        try:
            found = await py.patients(records).list()
        finally:
            transport.request = real
        files = (await transport.request("GET", "/v1/files", params={"limit": 200})).json()
        named = {f["id"]: f.get("identity_record_id") for f in files["items"]}
        return found, named

    found, named = py.run(go)
    return found, requests, named


class TestBothSdksNameTheIdentityRecord:
    def test_the_typescript_sdk_sends_identity_record_id(self, devices):
        _, _, named = python_listing(devices["py"])
        for created in devices["ts_created"]:
            assert named[created["file_id"]] == created["identity_record_id"]
        assert all(named[f] for f in devices["py_files"])


class TestFastPath:
    def test_typescript_lists_every_patient_in_two_batch_requests(self, devices):
        out = devices["ts"].run("list-patients")
        names = sorted(p["name"] for p in out["patients"])
        assert names == sorted(PY_NAMES + TS_NAMES)
        assert all(p["identity_record_id"] for p in out["patients"])
        assert out["unreadable"] == 0
        requests = out["requests"]
        assert requests.count("POST /v1/keyrings/batch") == 1
        assert requests.count("POST /v1/records/batch") == 1
        assert [r for r in requests if PER_FILE.match(r)] == []

    def test_python_lists_every_patient_in_two_batch_requests(self, devices):
        found, requests, _ = python_listing(devices["py"])
        assert sorted(p.identity.name for p in found) == sorted(PY_NAMES + TS_NAMES)
        assert all(p.identity_record_id for p in found)
        assert requests.count("POST /v1/keyrings/batch") == 1
        assert requests.count("POST /v1/records/batch") == 1
        assert [r for r in requests if PER_FILE.match(r)] == []

    def test_search_still_finds_a_patient_created_by_the_other_sdk(self, devices):
        found = devices["ts"].run("search", text="pyrot")
        assert sorted(p["name"] for p in found) == PY_NAMES
