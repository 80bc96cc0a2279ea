"""The `ecrin` CLI against the fake server: --json output, exit codes, prompts, pinning."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from ecrin_client.cli import main, runtime

from tests.client.conftest import EMAIL, NEW_PASSPHRASE, PASSPHRASE
from tests.client.fake_server import TOTP_CODE, URL


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def ecrin(fake, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runtime, "transport_factory", fake.transport)

    def run(*args: str, device: str = "a", input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        full_env = {"ECRIN_HOME": str(tmp_path / device), "ECRIN_SERVER": URL, **(env or {})}
        with runner.isolation(input=input, env=full_env) as (out, err, _):
            try:
                main(list(args))
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            return Result(code, out.getvalue().decode(), err.getvalue().decode())

    return run


def create(ecrin, device="a", email=EMAIL, role="practitioner"):
    result = ecrin("account", "create", "--email", email, "--role", role, "--json",
                   "--passphrase-stdin", device=device, input=PASSPHRASE + "\n")
    assert result.exit_code == 0, result.stderr + result.stdout
    return result.json()


class TestHelp:
    def test_epilog_lists_the_exit_codes(self, ecrin):
        result = ecrin("--help")
        assert result.exit_code == 0
        for text in ("0 ok", "2 authentication failed", "3 second factor required",
                     "5 rate limited", "6 server unavailable", "7 integrity"):
            assert text in " ".join(result.stdout.split())

    def test_a_usage_error_exits_1(self, ecrin):
        assert ecrin("sessions", "revoke").exit_code == 1
        assert ecrin("no-such-command").exit_code == 1


class TestAccountCreateAndLogin:
    def test_create_prints_the_recovery_key_once_and_signs_in(self, ecrin, tmp_path):
        data = create(ecrin)
        assert data["recovery_key"].startswith("ecrin-rk-")
        assert data["login"]["account"]["email"] == EMAIL
        assert data["account"]["role"] == "practitioner"
        files = "".join(p.read_text() for p in (tmp_path / "a").iterdir())
        assert data["recovery_key"] not in files and PASSPHRASE not in files

    def test_human_output_shows_the_recovery_key_in_a_panel(self, ecrin):
        result = ecrin("account", "create", "--email", EMAIL, env={
            "ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 0, result.stderr
        text = " ".join(result.stdout.replace("│", " ").split())
        assert "ecrin-rk-" in text and "shown only this once" in text

    def test_short_passphrase_is_refused(self, ecrin, fake):
        result = ecrin("account", "create", "--email", EMAIL, "--passphrase-stdin",
                       input="short\n")
        assert result.exit_code == 1
        assert "at least 12" in result.stderr
        assert fake.calls == []

    def test_no_passphrase_without_a_terminal_is_a_usage_error(self, ecrin):
        result = ecrin("login", "--email", EMAIL)
        assert result.exit_code == 1
        assert "--passphrase-stdin" in result.stderr

    def test_login_on_a_second_device_with_global_options(self, ecrin):
        create(ecrin)
        result = ecrin("--json", "--passphrase-stdin", "login", "--email", EMAIL,
                       device="b", input=PASSPHRASE + "\n")
        assert result.exit_code == 0, result.stderr
        assert result.json()["account"]["email"] == EMAIL
        whoami = ecrin("whoami", "--json", device="b")
        assert whoami.exit_code == 0
        assert whoami.json()["account"]["email"] == EMAIL
        assert whoami.json()["fingerprint"] == result.json()["fingerprint"]

    def test_wrong_passphrase_exits_2_with_one_line(self, ecrin):
        create(ecrin)
        result = ecrin("login", "--email", EMAIL, device="b",
                       env={"ECRIN_PASSPHRASE": "wrong passphrase"})
        assert result.exit_code == 2
        assert result.stderr.strip() == "error: wrong passphrase or unknown account"

    def test_unknown_account_is_the_same_answer(self, ecrin):
        result = ecrin("login", "--email", "nobody@example.fr", "--json",
                       env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 2
        assert result.json()["error"] == "InvalidCredentials"

    def test_second_factor_required_exits_3(self, ecrin):
        create(ecrin)
        assert ecrin("2fa", "enable", "--code", TOTP_CODE).exit_code == 0
        result = ecrin("login", "--email", EMAIL, "--json", device="b",
                       env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 3
        assert result.json()["slug"] == "second-factor-required"
        ok = ecrin("login", "--email", EMAIL, "--totp", TOTP_CODE, device="b",
                   env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert ok.exit_code == 0

    def test_rate_limited_exits_5(self, ecrin, fake):
        fake.rate_limited = True
        result = ecrin("login", "--email", EMAIL, env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 5
        assert "retry in 17 s" in result.stderr

    def test_server_unavailable_exits_6(self, ecrin, fake):
        fake.down_times = 10
        result = ecrin("login", "--email", EMAIL, env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 6

    def test_not_logged_in_exits_2(self, ecrin):
        assert ecrin("whoami").exit_code == 2

    def test_logout(self, ecrin, tmp_path):
        create(ecrin)
        assert ecrin("logout", "--json").json() == {"logged_out": True}
        assert not (tmp_path / "a" / "tokens.json").exists()
        assert ecrin("whoami").exit_code == 2


class TestTwoFactor:
    def test_enable_shows_uri_qr_and_recovery_codes(self, ecrin):
        create(ecrin)
        result = ecrin("2fa", "enable", "--code", TOTP_CODE)
        assert result.exit_code == 0, result.stderr
        assert "otpauth://totp/" in result.stderr
        assert "█" in result.stderr or "▀" in result.stderr  # the QR code
        assert "rc-00-" in result.stdout

    def test_two_step_enrolment_for_scripts(self, ecrin):
        create(ecrin)
        started = ecrin("2fa", "enable", "--no-confirm", "--json")
        assert started.json()["otpauth_uri"].startswith("otpauth://")
        assert started.json()["confirmed"] is False
        confirmed = ecrin("2fa", "confirm", TOTP_CODE, "--json")
        assert len(confirmed.json()["recovery_codes"]) == 10

    def test_a_wrong_code_exits_1(self, ecrin):
        create(ecrin)
        assert ecrin("2fa", "enable", "--code", "000000").exit_code == 1


class TestSessions:
    def test_list_and_revoke(self, ecrin):
        create(ecrin)
        ecrin("login", "--email", EMAIL, "--device-name", "tablet", device="b",
              env={"ECRIN_PASSPHRASE": PASSPHRASE})
        listed = ecrin("sessions", "list", "--json").json()
        tablet = next(s for s in listed if s["device_name"] == "tablet")
        assert ecrin("sessions", "revoke", tablet["id"], "--json",
                     env={"ECRIN_PASSPHRASE": PASSPHRASE}).exit_code == 0
        assert ecrin("whoami", device="b").exit_code == 2
        table = ecrin("sessions", "list")
        assert "this device" in table.stdout

    def test_a_short_id_is_enough(self, ecrin):
        create(ecrin)
        ecrin("login", "--email", EMAIL, "--device-name", "tablet", device="b",
              env={"ECRIN_PASSPHRASE": PASSPHRASE})
        listed = ecrin("sessions", "list", "--json").json()
        tablet = next(s for s in listed if s["device_name"] == "tablet")
        table = ecrin("sessions", "list").stdout
        assert tablet["id"][:8] in table and tablet["id"] not in table  # shown short
        revoked = ecrin("sessions", "revoke", tablet["id"][:8], "--json",
                        env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert revoked.exit_code == 0, revoked.stderr
        assert revoked.json() == {"revoked": tablet["id"]}
        assert ecrin("whoami", device="b").exit_code == 2

    def test_a_short_id_that_fits_no_session_exits_4_before_the_passphrase(self, ecrin):
        create(ecrin)
        mine = ecrin("sessions", "list", "--json").json()[0]["id"]
        other = "0123" if not mine.startswith("0123") else "4567"
        result = ecrin("sessions", "revoke", other)  # no passphrase given: not asked
        assert result.exit_code == 4 and "no session id starts with" in result.stderr

    def test_revoking_an_unknown_session_exits_4(self, ecrin):
        create(ecrin)
        result = ecrin("sessions", "revoke", "00000000-0000-4000-8000-000000000000",
                       env={"ECRIN_PASSPHRASE": PASSPHRASE})
        assert result.exit_code == 4


class TestPassphraseAndRecovery:
    def test_change_then_old_fails_new_works(self, ecrin):
        create(ecrin)
        result = ecrin("passphrase", "change", "--passphrase-stdin", "--json",
                       input=f"{PASSPHRASE}\n{NEW_PASSPHRASE}\n")
        assert result.exit_code == 0, result.stderr
        assert ecrin("login", device="b", env={"ECRIN_PASSPHRASE": PASSPHRASE},
                     ).exit_code in (1, 2)  # device b has no email yet: usage or auth
        assert ecrin("login", "--email", EMAIL, device="b",
                     env={"ECRIN_PASSPHRASE": PASSPHRASE}).exit_code == 2
        assert ecrin("login", "--email", EMAIL, device="b",
                     env={"ECRIN_PASSPHRASE": NEW_PASSPHRASE}).exit_code == 0

    def test_restore_with_the_recovery_key(self, ecrin):
        key = create(ecrin)["recovery_key"]
        result = ecrin("recovery", "restore", "--email", EMAIL, "--json",
                       "--passphrase-stdin", device="b", input=f"{key}\n{NEW_PASSPHRASE}\n")
        assert result.exit_code == 0, result.stderr
        assert result.json()["logged_in"] is True
        assert ecrin("whoami", device="a").exit_code == 2  # every session ended
        assert ecrin("login", device="a", env={"ECRIN_PASSPHRASE": NEW_PASSPHRASE}
                     ).exit_code == 0

    def test_restore_with_a_mistyped_key_exits_1(self, ecrin):
        create(ecrin)
        result = ecrin("recovery", "restore", "--email", EMAIL, device="b",
                       env={"ECRIN_RECOVERY_KEY": "ecrin-rk-0000", "ECRIN_NEW_PASSPHRASE":
                            NEW_PASSPHRASE})
        assert result.exit_code == 1
        assert "recovery key" in result.stderr

    def test_show_explains_that_it_cannot_be_shown_again(self, ecrin):
        result = ecrin("recovery", "show", "--json")
        assert result.exit_code == 0
        assert result.json()["reissue_supported"] is False
        assert "shown once" in result.json()["message"]


class TestVerify:
    def setup_two(self, ecrin):
        create(ecrin, device="a")
        patient = create(ecrin, device="b", email="patient@example.fr", role="patient")
        return patient["account"]["account_id"]

    def test_verify_pins_and_a_later_change_exits_7(self, ecrin, fake):
        patient_id = self.setup_two(ecrin)
        shown = ecrin("verify", patient_id, "--json")
        assert shown.exit_code == 0
        assert shown.json()["pinned"] is False  # --json without --yes never pins
        pinned = ecrin("verify", patient_id, "--yes")
        assert pinned.exit_code == 0 and "pinned" in pinned.stdout
        again = ecrin("verify", patient_id, "--json")
        assert again.json()["pinned"] is True
        assert again.json()["safety_number"] == shown.json()["safety_number"]

        import uuid

        from ecrin_e2ee import IdentityKeys

        forged = IdentityKeys.generate(uuid.UUID(patient_id)).public_identity()
        fake.directory[patient_id] = {"identity": forged.to_json(),
                                      "fingerprint": forged.fingerprint().hex()}
        loud = ecrin("verify", patient_id)
        assert loud.exit_code == 7
        assert "IDENTITY MISMATCH" in loud.stderr and "CHANGED" in loud.stderr
        assert ecrin("verify", patient_id, "--json").json()["error"] == "IdentityMismatch"

    def test_a_changed_key_is_pinned_again_only_with_replace(self, ecrin, fake):
        import uuid

        from ecrin_e2ee import IdentityKeys

        patient_id = self.setup_two(ecrin)
        assert ecrin("verify", patient_id, "--yes").exit_code == 0
        forged = IdentityKeys.generate(uuid.UUID(patient_id)).public_identity()
        fake.directory[patient_id] = {"identity": forged.to_json(),
                                      "fingerprint": forged.fingerprint().hex()}
        loud = ecrin("verify", patient_id)
        assert loud.exit_code == 7 and "--replace" in loud.stderr
        shown = ecrin("verify", patient_id, "--replace", "--json").json()
        assert shown["pinned"] is False and shown["key_change_signed"] is False
        assert shown["fingerprint"] == forged.fingerprint_hex() and shown["replaces"]
        assert ecrin("verify", patient_id, "--json").json()["error"] == "IdentityMismatch"
        replaced = ecrin("verify", patient_id, "--replace", "--yes")
        assert replaced.exit_code == 0 and "KEY CHANGED" in replaced.stderr
        assert ecrin("verify", patient_id, "--json").json()["pinned"] is True

    def test_a_known_account_by_its_first_characters(self, ecrin):
        patient_id = self.setup_two(ecrin)
        unknown = ecrin("verify", patient_id[:8], "--json")  # not pinned nor bound here
        assert unknown.exit_code == 4 and "give the whole account id" in unknown.stdout
        assert ecrin("verify", patient_id, "--yes").exit_code == 0
        again = ecrin("verify", patient_id[:8], "--json")
        assert again.exit_code == 0, again.stdout
        assert again.json()["account_id"] == patient_id and again.json()["pinned"] is True

    def test_unknown_account_exits_4_and_bad_id_exits_1(self, ecrin):
        self.setup_two(ecrin)
        assert ecrin("verify", "00000000-0000-4000-8000-000000000000").exit_code == 4
        assert ecrin("verify", "not-a-uuid").exit_code == 1
