"""The account's own security through the TypeScript SDK, against the real gateway and kms:
sessions listed and another one ended with a step-up, the second factor's status, and a
passphrase change whose new key wrap a Python device then opens.
"""

from __future__ import annotations

import pytest

from tests.e2ee_js.cross_devices import PASSPHRASE, PyDevice, TsDevice, kdf_env

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NEW_PASSPHRASE = "a new cross implementation passphrase"


@pytest.fixture(scope="module", autouse=True)
def _cheap_kdf() -> None:
    kdf_env()


class TestTypeScriptAccountSecurity:
    @pytest.fixture(scope="class")
    @classmethod
    def devices(cls, stack, tmp_path_factory):
        home = tmp_path_factory.mktemp("ts-account")
        first = TsDevice.signup(stack.url("gateway"), home / "first")
        second = TsDevice(first.server, home / "second", first.email, first.account_id,
                          first.fingerprint)
        second.run("login", email=first.email, recovery_code=first.recovery_codes.pop())
        return first, second

    def test_sessions_list_both_devices_and_the_second_factor(self, devices):
        first, second = devices
        mine = first.run("sessions")
        theirs = second.run("sessions")
        assert len(mine) == 2
        assert {s["session_id"] for s in mine} == {s["session_id"] for s in theirs}
        assert [s["current"] for s in mine].count(True) == 1
        assert first.run("second-factor") == {"enabled": True, "verifiedThisSession": True}

    def test_another_session_ends_only_with_a_step_up(self, devices):
        first, second = devices
        other = next(s["session_id"] for s in second.run("sessions") if s["current"])
        refused = first.refused("revoke-session", session_id=other)
        assert refused["error"] == "InvalidInput"  # no passphrase: nothing sent
        wrong = first.refused("revoke-session", session_id=other, passphrase="not the one",
                              recovery_code=first.recovery_codes.pop())
        assert wrong["error"] in ("InvalidCredentials", "AuthError")
        second.run("sessions")  # still alive
        first.run("revoke-session", session_id=other, passphrase=PASSPHRASE,
                  recovery_code=first.recovery_codes.pop())
        assert second.refused("sessions")["error"] in ("SessionRevoked", "AuthError", "NotLoggedIn")
        assert len(first.run("sessions")) == 1

    def test_a_changed_passphrase_opens_the_keys_on_a_python_device(self, devices, tmp_path):
        first, _ = devices
        assert first.run("change-passphrase", new_passphrase=NEW_PASSPHRASE,
                         recovery_code=first.recovery_codes.pop()) == {"changed": True}
        old = first.refused("login", email=first.email, recovery_code=first.recovery_codes[-1])
        assert old["error"] == "InvalidCredentials"
        python = PyDevice(first.server, tmp_path / "py", first.email, first.account_id)

        async def login_and_unlock(client):
            login = await client.login(first.email, NEW_PASSPHRASE,
                                       recovery_code=first.recovery_codes.pop())
            identity = await client.unlock(NEW_PASSPHRASE)
            return login.fingerprint, str(identity.account_id)

        assert python.run_client(login_and_unlock) == (first.fingerprint, first.account_id)
