"""The profile folder: 0700/0600, what it holds, and never a secret after any flow."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from ecrin_client import Profile
from ecrin_client.profile import StoredTokens

from ecrin_e2ee import RecoveryKey, derive_account_keys
from ecrin_e2ee.kdf import KdfParams
from tests.client.conftest import EMAIL, NEW_PASSPHRASE, PASSPHRASE
from tests.client.fake_server import TOTP_CODE, b64d


def encodings(raw: bytes) -> list[bytes]:
    return [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"="),
            base64.urlsafe_b64encode(raw).rstrip(b"=")]


def assert_no_secret(profile: Profile, secrets: list[bytes]) -> None:
    for path in profile.home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for secret in secrets:
                assert secret not in content, f"a secret leaked into {path.name}"


def assert_private_modes(profile: Profile) -> None:
    assert stat.S_IMODE(profile.home.stat().st_mode) == 0o700
    files = [p for p in profile.home.iterdir()]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert not path.name.endswith(".tmp")


class TestFiles:
    def test_modes_even_with_a_permissive_umask(self, tmp_path: Path):
        import os

        old = os.umask(0)
        try:
            profile = Profile(tmp_path / "home")
            profile.update_settings(server_url="https://x.test")
            profile.save_tokens(StoredTokens(access_token="a", refresh_token="r",
                                             session_id="s"))
            profile.pin("6f1c4c6e-4d0e-4a8e-9c39-1c1a0d5e7a10", "ab" * 32)
        finally:
            os.umask(old)
        assert_private_modes(profile)

    def test_an_existing_loose_folder_is_tightened(self, tmp_path: Path):
        home = tmp_path / "home"
        home.mkdir(mode=0o755)
        home.chmod(0o755)
        Profile(home).update_settings(email="a@example.fr")
        assert stat.S_IMODE(home.stat().st_mode) == 0o700

    def test_logout_removes_the_tokens_file(self, tmp_path: Path):
        profile = Profile(tmp_path)
        profile.save_tokens(StoredTokens(access_token="a", refresh_token="r", session_id="s"))
        profile.save_tokens(None)
        assert not (tmp_path / "tokens.json").exists()


class TestNoSecretAfterAnyFlow:
    async def test_every_flow(self, fake, open_client, device_a, device_b):
        client_a = open_client(device_a)
        _, recovery_text = await client_a.signup(EMAIL, PASSPHRASE, "practitioner")
        recovery = RecoveryKey.from_text(recovery_text)
        secrets = [PASSPHRASE.encode(), NEW_PASSPHRASE.encode(), recovery_text.encode(),
                   recovery_text.upper().encode(), *encodings(recovery.to_bytes())]

        def add_keys_for(passphrase: str) -> None:
            account = fake.accounts[EMAIL]
            keys = derive_account_keys(passphrase, b64d(account.salt),
                                       KdfParams.from_json(account.params))
            secrets.extend(encodings(keys.kek.to_bytes()))
            secrets.extend(encodings(bytes(keys.login_signing_key)))

        def check() -> None:
            for profile in (device_a, device_b):
                if profile.home.exists():
                    assert_no_secret(profile, secrets)
                    assert_private_modes(profile)

        add_keys_for(PASSPHRASE)
        check()
        await client_a.login(EMAIL, PASSPHRASE)
        identity = await client_a.unlock(PASSPHRASE)
        secrets.extend(encodings(identity.to_bytes()))
        secrets.extend(encodings(bytes(identity.encryption_key)))
        secrets.extend(encodings(bytes(identity.signing_key)))
        check()
        client_b = open_client(device_b)
        await client_b.login(EMAIL, PASSPHRASE)
        await client_b.enable_totp()
        await client_b.confirm_totp(TOTP_CODE)
        await client_b.verify_account(str(identity.account_id))
        check()
        await client_a.login(EMAIL, PASSPHRASE, totp_code=TOTP_CODE)
        await client_a.change_passphrase(PASSPHRASE, NEW_PASSPHRASE, totp_code=TOTP_CODE)
        add_keys_for(NEW_PASSPHRASE)
        check()
        await client_b.recover(EMAIL, recovery_text, PASSPHRASE + "!", totp_code=TOTP_CODE)
        secrets.append((PASSPHRASE + "!").encode())
        check()
        await client_b.logout()
        check()
        settings = device_a.settings()
        assert settings.email == EMAIL and settings.server_url and settings.account_id
        assert device_a.pinned(settings.account_id)


@pytest.mark.parametrize("name", ["profile.json", "tokens.json", "pins.json"])
def test_unreadable_files_are_a_clear_error(tmp_path: Path, name: str):
    from ecrin_client import InvalidInput

    (tmp_path / name).write_text("{not json")
    profile = Profile(tmp_path)
    if name == "profile.json":
        with pytest.raises(InvalidInput):
            profile.settings()
    elif name == "pins.json":
        with pytest.raises(InvalidInput):
            profile.pins()
    else:
        with pytest.raises(InvalidInput):
            profile.tokens()


class TestSeenVersions:
    """Rollback marks live in ``state.db``, updated in place (issue 21)."""

    def test_marks_only_rise_and_survive_a_new_profile_object(self, tmp_path: Path):
        profile = Profile(tmp_path / "p")
        profile.remember_versions({"r": 3, "key:f:clinical": 2})
        profile.remember_versions({"r": 2, "s": 1})
        again = Profile(tmp_path / "p")
        assert again.seen_versions() == {"r": 3, "s": 1, "key:f:clinical": 2}
        assert again.seen_version("r") == 3 and again.seen_version("missing") == 0

    def test_the_old_versions_file_is_merged_then_removed(self, tmp_path: Path):
        home = tmp_path / "p"
        home.mkdir()
        (home / "versions.json").write_text('{"r": 5, "s": 1, "bad": "x"}')
        profile = Profile(home)
        profile.remember_versions({"s": 4})
        assert profile.seen_versions() == {"r": 5, "s": 4}
        assert not (home / "versions.json").exists()

    def test_the_database_is_private_even_with_a_permissive_umask(self, tmp_path: Path):
        import os

        old = os.umask(0)
        try:
            profile = Profile(tmp_path / "home")
            profile.remember_versions({"r": 1})
            profile.update_settings(server_url="https://x.test")
        finally:
            os.umask(old)
        assert (profile.home / "state.db").exists()
        assert_private_modes(profile)

    def test_a_write_does_not_rewrite_what_was_seen_before(self, tmp_path: Path):
        """The cost of one more mark does not grow with the marks already kept: the
        database file grows by about one row, where a JSON file was rewritten whole."""
        profile = Profile(tmp_path / "p")
        profile.remember_versions({f"record-{i}": 1 for i in range(20_000)})
        db = profile.home / "state.db"
        wal = profile.home / "state.db-wal"
        before = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        for i in range(10):
            profile.remember_versions({f"new-{i}": 1})
        after = db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        assert after - before < 10 * 3 * 4096  # a few pages each, not 20 000 rows each
        assert profile.seen_version("record-19999") == 1

    def test_two_processes_writing_keep_the_highest(self, tmp_path: Path):
        import subprocess
        import sys

        home = tmp_path / "p"
        code = ("import sys; from pathlib import Path; from ecrin_client.profile import "
                "Profile; p = Profile(Path(sys.argv[1])); n = int(sys.argv[2]); "
                "[p.remember_versions({'r': v}) for v in range(n, n + 300)]")
        procs = [subprocess.Popen([sys.executable, "-c", code, str(home), str(start)])
                 for start in (0, 100)]
        assert all(p.wait(60) == 0 for p in procs)
        assert Profile(home).seen_version("r") == 399

    def test_a_command_waits_for_another_writing_before_the_database_is_in_wal(
            self, tmp_path: Path):
        """Two commands of one profile starting together: the other one holds the write
        lock of a state.db not yet in WAL. SQLite refuses the switch to WAL at once
        ("database is locked", without its busy timeout); this one waits instead (it
        failed as "state.db is unreadable" one run in 10 to 40 of the test above)."""
        import subprocess
        import sys

        home = tmp_path / "p"
        home.mkdir(mode=0o700)
        holder = subprocess.Popen([sys.executable, "-c", (
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], "
            "isolation_level=None); db.execute('CREATE TABLE IF NOT EXISTS seen (key TEXT "
            "PRIMARY KEY, version INTEGER NOT NULL)'); db.execute('BEGIN IMMEDIATE'); "
            "db.execute(\"INSERT INTO seen VALUES ('other', 1)\"); print('held', flush=True); "
            "time.sleep(0.4); db.execute('COMMIT')"), str(home / "state.db")],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            profile = Profile(home)
            profile.remember_versions({"r": 1})
        finally:
            assert holder.wait(60) == 0
        assert (profile.seen_version("r"), profile.seen_version("other")) == (1, 1)


def test_another_connection_in_this_process_does_not_break_the_database(tmp_path: Path):
    """Opening a second profile on the same folder (a new client) must not drop the
    first one's locks: a CLI process writing meanwhile then checkpoints safely."""
    import subprocess
    import sys

    home = tmp_path / "p"
    first = Profile(home)
    first.remember_versions({"a": 1})
    second = Profile(home)
    second.remember_versions({"b": 1})  # opens state.db again in this process
    code = ("import sys; from pathlib import Path; from ecrin_client.profile import Profile; "
            "p = Profile(Path(sys.argv[1])); p.remember_versions({'c': 1}); p.close()")
    subprocess.run([sys.executable, "-c", code, str(home)], check=True, timeout=60)
    first.remember_versions({"d": 2})
    assert first.seen_versions() == {"a": 1, "b": 1, "c": 1, "d": 2}
    first.close()
    second.close()
