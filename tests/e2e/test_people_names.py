"""People by the name their owner gave them, through the CLI and the real services (issue
20): an invitee named at invitation time, the patient shown by the file's identity, a
colleague named when verified in person; the names never reach a server."""

from __future__ import annotations

import asyncio

import pytest
from ecrin_client import Records
from ecrin_client.sharing import Sharing

from tests.e2e.records_support import (
    PASSPHRASE,
    Practitioner,
    database_dumps,
    logs,
    new_account,
    practitioner,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

MOTHER = "Mme Zéphyrine Quillard"
COLLEAGUE = "Dr Octave Brindejonc"


def redeem(user: Practitioner, code: str) -> None:
    async def go() -> None:
        async with user.client() as client:
            await Sharing(Records(client, await client.unlock(PASSPHRASE))).accept(code)

    asyncio.run(go())


@pytest.fixture(scope="module")
def story(stack, tmp_path_factory):
    server = stack.url("gateway")
    kine = practitioner(server, tmp_path_factory.mktemp("kine-names"))
    mother = asyncio.run(new_account(server, tmp_path_factory.mktemp("mother"),
                                     "representative"))
    patient = asyncio.run(new_account(server, tmp_path_factory.mktemp("patient"), "patient"))
    colleague = practitioner(server, tmp_path_factory.mktemp("colleague-names"))
    file_id = kine.ok("patient", "create", "--name", "Léonie Quillard", "--birth-date",
                      "12/05/2015")["file_id"]
    invited = kine.ok("share", "invite", file_id, "--as", "parent", "--no-qr",
                      "--name", MOTHER)
    redeem(mother, invited["code"])
    code = kine.ok("share", "invite", file_id, "--as", "patient", "--no-qr")["code"]
    redeem(patient, code)
    verified = kine.ok("verify", colleague.account_id, "--yes", "--name", COLLEAGUE)
    # pinned: the first characters of the id are enough, as `share list` shows it
    kine.ok("share", "grant", file_id, colleague.account_id[:8], "--as", "care_team")
    return kine, mother, patient, colleague, file_id, verified


class TestShareList:
    def test_each_person_is_shown_by_the_name_given_or_the_patients_identity(self, story):
        kine, mother, patient, colleague, file_id, verified = story
        assert verified["name"] == COLLEAGUE and verified["pinned"]
        names = kine.ok("share", "list", file_id)["names"]
        assert names[kine.account_id] == "you"
        assert names[mother.account_id] == f"{MOTHER} ({mother.account_id[:8]})"
        assert names[patient.account_id] == f"Léonie Quillard ({patient.account_id[:8]})"
        assert names[colleague.account_id] == f"{COLLEAGUE} ({colleague.account_id[:8]})"
        table = kine.ecrin("share", "list", file_id)
        assert table.code == 0 and "Zéphyrine" in table.stdout and "Brindejonc" in table.stdout

    def test_another_device_of_no_one_knows_the_names(self, story):
        _, mother, _, colleague, file_id, _ = story
        run = colleague.ecrin("share", "list", file_id, "--json")
        assert MOTHER not in run.stdout and COLLEAGUE not in run.stdout


class TestAudit:
    def test_actors_are_named(self, story):
        kine, mother, patient, _, file_id, _ = story
        names = kine.ok("audit", file_id)["names"]
        # the mother redeemed, then fetched keys: she is an actor of the trail
        assert names[mother.account_id] == f"{MOTHER} ({mother.account_id[:8]})"
        assert names[kine.account_id] == "you"
        # the patient, by the file's identity (decrypted here), as in `share list`
        assert names[patient.account_id] == f"Léonie Quillard ({patient.account_id[:8]})"
        table = kine.ecrin("audit", file_id[:8])
        assert table.code == 0 and "Audit trail of Léonie Quillard" in table.stdout


class TestNeverOnAServer:
    def test_no_name_in_any_database_or_log(self, story, stack):
        for blob in [*database_dumps(stack), *logs(stack)]:
            for fragment in (b"phyrine", b"Brindejonc", b"Octave"):
                assert fragment not in blob
