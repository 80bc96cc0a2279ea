"""Input as people write it (JJ/MM/AAAA, reps or a hold), ids by their first characters,
notes shown as text, and errors that name the field, caught before any Argon2id run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from ecrin_client import InvalidInput, NotFound, client
from ecrin_client.cli import runtime
from ecrin_client.cli.notes_view import exercise_line
from ecrin_client.cli.records import _exercise
from ecrin_client.errors import error_from_response
from ecrin_client.ids import expand, is_prefix, resolve
from ecrin_client.kine import Exercise, parse_day, sniff_content_type
from pydantic import ValidationError

from tests.client.cli_support import Result, run_cli
from tests.client.conftest import EMAIL, PASSPHRASE
from tests.client.fake_records import FakeRecords
from tests.client.fake_server import URL


class TestDates:
    @pytest.mark.parametrize(("text", "day"), [
        ("04/05/2001", dt.date(2001, 5, 4)), ("4/5/2001", dt.date(2001, 5, 4)),
        ("04.05.2001", dt.date(2001, 5, 4)), ("04-05-2001", dt.date(2001, 5, 4)),
        ("2001-05-04", dt.date(2001, 5, 4)), (" 31/12/1999 ", dt.date(1999, 12, 31)),
    ])
    def test_french_and_iso(self, text, day):
        assert parse_day(text) == day

    @pytest.mark.parametrize("text", ["31/02/2000", "13/13/2000", "2000/05/04", "demain",
                                      "", "05/2001"])
    def test_refused_with_the_accepted_forms(self, text):
        with pytest.raises(InvalidInput, match="JJ/MM/AAAA or AAAA-MM-JJ"):
            parse_day(text, "birth date")


class TestExercises:
    def test_reps_or_hold(self):
        assert _exercise("Squats;3;12") == {"name": "Squats", "sets": "3", "reps": "12"}
        assert _exercise("Gainage;3;30s;tous les jours") == {
            "name": "Gainage", "sets": "3", "hold_seconds": 30, "frequency": "tous les jours"}
        assert _exercise("Étirement;2;1min30s")["hold_seconds"] == 90
        assert _exercise("Étirement;2;2 min")["hold_seconds"] == 120
        assert _exercise("Marche")== {"name": "Marche"}

    @pytest.mark.parametrize("text", ["Squats;3;soon", ";3;12", "a;b;c;d;e", "Gainage;3;s"])
    def test_bad_exercise(self, text):
        with pytest.raises(InvalidInput):
            _exercise(text)

    def test_the_model_takes_one_of_the_two(self):
        assert Exercise(name="Gainage", hold_seconds=30).reps is None
        assert Exercise(name="Squats").reps == 1  # programs written before holds
        with pytest.raises(ValidationError, match="not both"):
            Exercise(name="x", reps=3, hold_seconds=30)

    def test_shown_as_written(self):
        assert exercise_line({"name": "Gainage", "sets": 3, "hold_seconds": 30,
                              "frequency": "daily"}) == "Gainage: 3 × 30 s, daily"
        assert exercise_line({"name": "Squats", "sets": 3, "reps": 12}) == "Squats: 3 × 12"
        assert exercise_line({"name": "É", "sets": 2, "hold_seconds": 90}) == \
            "É: 2 × 1 min 30 s"


class TestIdPrefixes:
    IDS = ["3f2a9c10-0000-4000-8000-000000000001", "3f2b0000-0000-4000-8000-000000000002",
           "77aa0000-0000-4000-8000-000000000003"]

    def test_a_unique_prefix(self):
        assert resolve("3f2a", self.IDS, "record") == self.IDS[0]
        assert resolve("77AA0000-00", self.IDS, "record") == self.IDS[2]

    def test_an_ambiguous_prefix_names_the_candidates(self):
        with pytest.raises(InvalidInput, match="ambiguous.*3f2a9c10-000.*3f2b0000-000"):
            resolve("3f2", self.IDS, "record")

    def test_no_match(self):
        with pytest.raises(NotFound):
            resolve("dead", self.IDS, "record")

    def test_what_may_be_a_prefix(self):
        assert is_prefix("3f2a") and is_prefix("3f2a9c10-00")
        assert not is_prefix("3f2") and not is_prefix("dupont")

    def test_expand_looks_up_only_a_short_id(self):
        asked: list[bool] = []

        def candidates() -> list[str]:
            asked.append(True)
            return self.IDS

        assert expand("3f2a", candidates, "session") == self.IDS[0] and asked
        asked.clear()
        whole = "3F2A9C10-0000-4000-8000-000000000001"
        assert expand(whole, candidates, "session") == whole and not asked
        assert expand("dupont", candidates, "session") == "dupont" and not asked
        twins = [self.IDS[0], "3f2a0000-0000-4000-8000-000000000009"]
        with pytest.raises(InvalidInput, match="ambiguous: 2 session ids"):
            expand("3f2a", lambda: twins, "session")


class TestServerReasons:
    def test_a_422_names_the_field_and_the_reason(self):
        response = httpx.Response(422, json={
            "type": "about:blank", "title": "Unprocessable", "status": 422,
            "detail": "The request does not match the schema.",
            "errors": [{"loc": ["body", "email"], "msg": "value is not a valid email address",
                        "type": "value_error"}]})
        error = error_from_response(response)
        assert isinstance(error, InvalidInput)
        assert error.message == "email: value is not a valid email address"
        assert error.to_json()["fields"] == {"email": "value is not a valid email address"}

    def test_a_specific_detail_is_kept_with_the_fields(self):
        response = httpx.Response(400, json={
            "detail": "Bad key derivation parameters.",
            "errors": [{"loc": ["body", "kdf", "params", "opslimit"], "msg": "too low"}]})
        assert error_from_response(response).message == \
            "Bad key derivation parameters. (kdf.params.opslimit: too low)"

    def test_an_empty_file_is_called_empty(self):
        with pytest.raises(InvalidInput, match="the file is empty"):
            sniff_content_type(b"")


@pytest.fixture
def fake() -> FakeRecords:
    return FakeRecords()


@pytest.fixture
def ecrin(fake, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(runtime, "transport_factory", fake.transport)
    monkeypatch.setenv("ECRIN_AGENT", "off")

    def run(*args: str, input: str | None = None, passphrase: bool = True) -> Result:
        env = {"ECRIN_HOME": str(tmp_path / "home"), "ECRIN_SERVER": URL}
        if passphrase:
            env["ECRIN_PASSPHRASE"] = PASSPHRASE
        return run_cli(args, env, input)

    return run


def ok(ecrin, *args: str) -> dict:
    result = ecrin(*args, "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    return result.json()


def no_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("Argon2id ran before a cheap check")

    monkeypatch.setattr(client, "create_account", refuse)
    monkeypatch.setattr(client, "derive_account_keys", refuse)


class TestCheapChecksFirst:
    def test_a_bad_email_is_refused_before_the_passphrase_and_argon2(self, ecrin, monkeypatch):
        no_argon2(monkeypatch)
        result = ecrin("account", "create", "--email", "kine@@example", passphrase=False)
        assert result.exit_code == 1
        assert "email:" in result.stderr and "passphrase" not in result.stderr

    def test_json_names_the_field(self, ecrin, monkeypatch):
        no_argon2(monkeypatch)
        result = ecrin("account", "create", "--email", "no-at-sign", "--json")
        assert result.exit_code == 1 and "email" in result.json()["fields"]

    def test_an_empty_document_and_a_bad_code_before_the_passphrase(self, ecrin, tmp_path):
        assert ecrin("account", "create", "--email", EMAIL).exit_code == 0
        (tmp_path / "empty.pdf").write_bytes(b"")
        result = ecrin("record", "add", "dupont", str(tmp_path / "empty.pdf"),
                       passphrase=False)
        assert result.exit_code == 1 and "the file is empty" in result.stderr
        result = ecrin("share", "accept", "ecrin-inv-NOT-A-CODE", passphrase=False)
        assert result.exit_code == 1 and "not a valid invitation code" in result.stderr


class TestCommandsTakeWhatPeopleType:
    def test_short_ids_french_dates_and_readable_notes(self, ecrin):
        assert ecrin("account", "create", "--email", EMAIL).exit_code == 0
        file_id = ok(ecrin, "patient", "create", "--name", "Léa Dupont", "--birth-date",
                     "04/05/2001")["file_id"]
        assert ok(ecrin, "patient", "show", file_id[:6])["identity"]["birth_date"] == \
            "2001-05-04"
        assert [p["file_id"] for p in ok(ecrin, "patient", "list", "--search",
                                         "4/5/2001")] == [file_id]
        listed = ecrin("patient", "list")
        assert file_id[:8] in listed.stdout and file_id not in listed.stdout
        assert "04/05/2001" in listed.stdout
        program = ok(ecrin, "record", "note", file_id[:8], "--kind", "exercise-program",
                     "--date", "30/11/2026", "--exercise", "Gainage;3;30s;tous les jours")
        record_id = program["record_id"]
        shown = ecrin("record", "get", file_id[:8], record_id[:8])
        assert shown.exit_code == 0, shown.stderr
        assert "Gainage: 3 × 30 s, tous les jours" in shown.stdout
        assert "Date: 30/11/2026" in shown.stdout and "{" not in shown.stdout
        got = ok(ecrin, "record", "get", file_id, record_id[:5])
        assert got["content"]["exercises"][0]["hold_seconds"] == 30
        assert got["content"]["date"] == "2026-11-30"
