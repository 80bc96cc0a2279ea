"""`ecrin patient ...` and `ecrin record ...` against the fake services: --json output,
exit codes, and nothing decrypted shown when the server tampers (exit 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ecrin_client.cli import runtime

from tests.client.cli_support import Result, run_cli
from tests.client.conftest import EMAIL, PASSPHRASE
from tests.client.fake_records import FakeRecords
from tests.client.fake_server import URL

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100


@pytest.fixture
def fake() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def ecrin(fake, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runtime, "transport_factory", fake.transport)

    def run(*args: str, input: str | None = None) -> Result:
        env = {"ECRIN_HOME": str(tmp_path / "home"), "ECRIN_SERVER": URL,
               "ECRIN_PASSPHRASE": PASSPHRASE}
        return run_cli(args, env, input)

    created = run("account", "create", "--email", EMAIL, "--json")
    assert created.exit_code == 0, created.stderr
    return run


def ok(ecrin, *args: str, input: str | None = None):
    result = ecrin(*args, "--json", input=input)
    assert result.exit_code == 0, result.stderr + result.stdout
    return result.json()


class TestPatientCommands:
    def test_create_list_search_show(self, ecrin):
        created = ok(ecrin, "patient", "create", "--name", "Léa Dupont", "--birth-date",
                     "2001-05-04", "--email", "lea@example.fr")
        assert created["identity"]["name"] == "Léa Dupont"
        assert [p["file_id"] for p in ok(ecrin, "patient", "list", "--search", "DUPÖNT")] == \
            [created["file_id"]]
        assert ok(ecrin, "patient", "show", "dupont")["identity"]["email"] == "lea@example.fr"
        human = ecrin("patient", "list")
        assert human.exit_code == 0 and "Léa Dupont" in human.stdout
        shown = ecrin("patient", "show", created["file_id"][:8])  # plain lines, as written
        assert shown.exit_code == 0 and "birth date: 04/05/2001" in shown.stdout

    def test_bad_identity_exits_1(self, ecrin):
        result = ecrin("patient", "create", "--name", "X", "--birth-date", "31/02/2000")
        assert result.exit_code == 1 and "is not a date" in result.stderr
        result = ecrin("patient", "create", "--name", "", "--birth-date", "31/12/2000")
        assert result.exit_code == 1 and "invalid patient identity" in result.stderr
        assert ecrin("patient", "show", "Personne").exit_code == 4


class TestRecordCommands:
    def test_every_kind_list_get_history_delete(self, ecrin, tmp_path):
        file_id = ok(ecrin, "patient", "create", "--name", "Léa Dupont", "--birth-date",
                     "2001-05-04")["file_id"]
        note = ok(ecrin, "record", "note", file_id, "--act", "AMK 7.5", "--pain", "3",
                  "--notes", "RAS", "--date", "2026-03-02")
        ok(ecrin, "record", "note", file_id, "--kind", "bilan", "--motif", "Lombalgie",
           "--objective", "Marcher")
        program = ok(ecrin, "record", "note", file_id, "--kind", "exercise-program",
                     "--exercise", "Gainage;3;30;1x/jour")
        assert program["scope"] == "shared"
        from_stdin = ok(ecrin, "record", "note", file_id, "--kind", "bilan", "--from-json",
                        "-", input=json.dumps({"date": "2026-03-03", "motif": "Cervicalgie"}))
        assert from_stdin["metadata"]["kind"] == "bilan"
        (tmp_path / "radio.png").write_bytes(PNG)
        doc = ok(ecrin, "record", "add", file_id, str(tmp_path / "radio.png"), "--kind",
                 "imaging")
        assert doc["metadata"]["content_type"] == "image/png"
        kinds = sorted(r["metadata"]["kind"] for r in ok(ecrin, "record", "list", file_id))
        assert kinds == ["bilan", "bilan", "exercise-program", "imaging", "patient-identity",
                         "session-note"]
        got = ok(ecrin, "record", "get", file_id, note["record_id"])
        assert got["content"]["acts"] == ["AMK 7.5"] and got["content"]["pain"] == 3
        ok(ecrin, "record", "get", file_id, doc["record_id"], "-o", str(tmp_path / "b.png"))
        assert (tmp_path / "b.png").read_bytes() == PNG
        ok(ecrin, "record", "note", file_id, "--version-of", note["record_id"], "--pain", "1")
        assert [v["version"] for v in ok(ecrin, "record", "history", file_id,
                                         note["record_id"])] == [2, 1]
        table = ecrin("record", "list", file_id).stdout  # dates as people write them
        assert "03/03/2026" in table  # the bilan of --from-json, dated 2026-03-03
        ok(ecrin, "record", "delete", file_id, doc["record_id"])
        assert ecrin("record", "get", file_id, doc["record_id"]).exit_code == 4

    def test_invalid_notes_and_files_exit_1(self, ecrin, tmp_path):
        file_id = ok(ecrin, "patient", "create", "--name", "Léa Dupont", "--birth-date",
                     "2001-05-04")["file_id"]
        assert ecrin("record", "note", file_id, "--pain", "12").exit_code == 1
        assert ecrin("record", "note", file_id, "--kind", "poem").exit_code == 1
        (tmp_path / "a.txt").write_text("hello")
        assert ecrin("record", "add", file_id, str(tmp_path / "a.txt")).exit_code == 1

    def test_tampered_content_exits_7_and_shows_nothing(self, ecrin, fake, tmp_path):
        file_id = ok(ecrin, "patient", "create", "--name", "Léa Dupont", "--birth-date",
                     "2001-05-04")["file_id"]
        note = ok(ecrin, "record", "note", file_id, "--notes", "secret clinique")
        version = fake.records[note["record_id"]].versions[1]
        version.content = version.content[:-1] + bytes([version.content[-1] ^ 1])
        result = ecrin("record", "get", file_id, note["record_id"])
        assert result.exit_code == 7
        assert "secret clinique" not in result.stdout + result.stderr
        assert "does not verify" in result.stderr
        assert ecrin("record", "get", file_id, note["record_id"], "-o",
                     str(tmp_path / "n.json")).exit_code == 7
        assert not (tmp_path / "n.json").exists()
