"""Accounts end to end: the real `ecrin` CLI in subprocesses against the four services.

Two ``ECRIN_HOME`` folders are two devices. After the flows, every database (the SQLite
files under the stack's state folder, or a ``pg_dump`` of each PostgreSQL database) and
every service log is searched for the passphrases, the recovery key and private key bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from ecrin_client import EcrinClient, Profile
from ecrin_client.encoding import b64d
from sqlalchemy.engine import make_url

from ecrin_e2ee import KdfParams, RecoveryKey, derive_account_keys

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

PASSPHRASE = "e2e correct horse battery"
NEW_PASSPHRASE = "e2e brand new passphrase"
RECOVERED_PASSPHRASE = "e2e passphrase after recovery"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@dataclass
class Device:
    home: Path
    server: str

    def ecrin(self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
              ) -> Run:
        full_env = {"PATH": "/usr/bin:/bin", "ECRIN_HOME": str(self.home),
                    "ECRIN_SERVER": self.server, "ECRIN_KDF_PROFILE": "insecure-test",
                    **(env or {})}
        done = subprocess.run([sys.executable, "-m", "ecrin_client", *args],  # noqa: S603
                              input=stdin, capture_output=True, text=True, env=full_env,
                              timeout=120)
        return Run(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> dict:
        run = self.ecrin(*args, "--json", stdin=stdin)
        assert run.code == 0, f"ecrin {' '.join(args)} exited {run.code}: {run.stderr}{run.stdout}"
        return run.json()


@pytest.fixture
def devices(stack, tmp_path: Path):
    server = stack.url("gateway")
    return Device(tmp_path / "device-a", server), Device(tmp_path / "device-b", server)


def new_email() -> str:
    return f"kine-{uuid.uuid4().hex[:10]}@example.fr"


def create(device: Device, email: str, role: str = "practitioner") -> dict:
    return device.ok("account", "create", "--email", email, "--role", role,
                     "--passphrase-stdin", stdin=PASSPHRASE + "\n")


class TestTwoDevices:
    def test_sign_up_on_a_then_login_and_unwrap_on_b(self, devices):
        a, b = devices
        email = new_email()
        created = create(a, email)
        assert created["recovery_key"].startswith("ecrin-rk-")
        logged_in = b.ok("login", "--email", email, "--device-name", "tablet",
                         "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        # b unwrapped the same identity that a created
        assert logged_in["fingerprint"] == created["login"]["fingerprint"]
        assert b.ok("whoami")["account"]["email"] == email
        sessions = a.ok("sessions", "list")
        assert {s["device_name"] for s in sessions} >= {"tablet"}

    def test_wrong_passphrase_and_unknown_account_exit_2_alike(self, devices):
        a, b = devices
        email = new_email()
        create(a, email)
        wrong = b.ecrin("login", "--email", email, "--passphrase-stdin",
                        stdin="not the passphrase\n")
        unknown = b.ecrin("login", "--email", new_email(), "--passphrase-stdin",
                          stdin=PASSPHRASE + "\n")
        assert wrong.code == unknown.code == 2
        assert wrong.stderr == unknown.stderr

    def test_passphrase_change_then_only_the_new_one_works(self, devices):
        a, b = devices
        email = new_email()
        create(a, email)
        b.ok("login", "--email", email, "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        a.ok("passphrase", "change", "--passphrase-stdin",
             stdin=f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
        assert b.ecrin("whoami").code == 2  # the other device was signed out
        assert b.ecrin("login", "--email", email, "--passphrase-stdin",
                       stdin=PASSPHRASE + "\n").code == 2
        b.ok("login", "--email", email, "--passphrase-stdin", stdin=NEW_PASSPHRASE + "\n")
        a.ok("whoami")

    def test_recovery_after_a_forgotten_passphrase(self, devices):
        a, b = devices
        email = new_email()
        key = create(a, email)["recovery_key"]
        restored = b.ok("recovery", "restore", "--email", email, "--passphrase-stdin",
                        stdin=f"{key}\n{RECOVERED_PASSPHRASE}\n")
        assert restored["logged_in"] is True
        assert a.ecrin("whoami").code == 2  # every session ended
        assert a.ecrin("login", "--passphrase-stdin", stdin=PASSPHRASE + "\n").code == 2
        a.ok("login", "--passphrase-stdin", stdin=RECOVERED_PASSPHRASE + "\n")

    def test_verify_pins_and_safety_numbers_agree(self, devices):
        a, b = devices
        practitioner, patient = new_email(), new_email()
        a_id = create(a, practitioner)["account"]["account_id"]
        b_id = create(b, patient, role="patient")["account"]["account_id"]
        seen_by_a = a.ok("verify", b_id, "--yes")
        seen_by_b = b.ok("verify", a_id, "--yes")
        assert seen_by_a["pinned"] and seen_by_b["pinned"]
        assert seen_by_a["safety_number"] == seen_by_b["safety_number"]
        assert a.ok("verify", b_id)["pinned"] is True


def encodings(raw: bytes) -> list[bytes]:
    return [raw, raw.hex().encode(), base64.b64encode(raw), base64.b64encode(raw).rstrip(b"="),
            base64.urlsafe_b64encode(raw).rstrip(b"=")]


def database_dumps(stack, dump_dir: Path) -> list[bytes]:
    """Raw bytes of every SQLite file, or a pg_dump of every PostgreSQL database; and logs."""
    dumps: list[bytes] = []
    for url in stack.database_urls.values():
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql":
            assert shutil.which("pg_dump"), "pg_dump is needed to dump the PostgreSQL databases"
            plain = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            dumps.append(subprocess.run(["pg_dump", "--no-owner", plain],  # noqa: S603,S607
                                        capture_output=True, check=True).stdout)
    for path in stack.state.rglob("*"):
        if path.is_file() and (path.suffix in (".db", ".log") or path.name.endswith(
                ("-wal", "-journal", "-shm"))):
            dumps.append(path.read_bytes())
    assert dumps
    return dumps


async def identity_secrets(home: Path, server: str, passphrase: str) -> list[bytes]:
    """Private key bytes of the account in ``home``, unwrapped on the device, for the search."""
    profile = Profile(home)
    async with EcrinClient(server, profile) as client:
        identity = await client.unlock(passphrase)
    settings = profile.settings()
    keys = derive_account_keys(passphrase, b64d(settings.kdf_salt or ""),
                               KdfParams.from_json(settings.kdf_params or {}))
    return [*encodings(identity.to_bytes()), *encodings(bytes(identity.encryption_key)),
            *encodings(bytes(identity.signing_key)), *encodings(keys.kek.to_bytes()),
            *encodings(bytes(keys.login_signing_key))]


class TestNothingSecretAtRest:
    def test_database_dumps_hold_no_passphrase_recovery_key_or_private_key(
            self, stack, devices, tmp_path, monkeypatch):
        monkeypatch.setenv("ECRIN_KDF_PROFILE", "insecure-test")  # the in-process unlocks
        a, b = devices
        email = new_email()
        key_text = create(a, email)["recovery_key"]
        secrets: list[bytes] = [PASSPHRASE.encode(), NEW_PASSPHRASE.encode(),
                                RECOVERED_PASSPHRASE.encode(), key_text.encode(),
                                key_text.upper().encode(), key_text.removeprefix(
                                    "ecrin-rk-").encode(),
                                *encodings(RecoveryKey.from_text(key_text).to_bytes())]
        server = stack.url("gateway")
        secrets += asyncio.run(identity_secrets(a.home, server, PASSPHRASE))
        b.ok("login", "--email", email, "--passphrase-stdin", stdin=PASSPHRASE + "\n")
        a.ok("passphrase", "change", "--passphrase-stdin",
             stdin=f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
        secrets += asyncio.run(identity_secrets(a.home, server, NEW_PASSPHRASE))
        b.ok("recovery", "restore", "--email", email, "--passphrase-stdin",
             stdin=f"{key_text}\n{RECOVERED_PASSPHRASE}\n")
        secrets += asyncio.run(identity_secrets(b.home, server, RECOVERED_PASSPHRASE))

        dumps = database_dumps(stack, tmp_path)
        # the search reads the real data: the account's public values are there
        assert any(email.encode() in dump for dump in dumps)
        for dump in dumps:
            for secret in secrets:
                assert secret not in dump, "a secret is stored in a database or a log"
        for device in (a, b):
            for path in device.home.iterdir():
                content = path.read_bytes()
                assert not any(secret in content for secret in secrets), path.name
