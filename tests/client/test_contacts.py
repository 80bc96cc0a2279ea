"""Contact names (ecrin_client.contacts): sealed on the device for the account's own keys,
never in clear; found again through the invitation an account redeemed."""

from __future__ import annotations

import uuid

import pytest
from ecrin_client import IntegrityError, InvalidInput, Profile
from ecrin_client.contacts import FILE, Contacts
from ecrin_client.trust import Binding, TrustStore

from ecrin_e2ee import IdentityKeys

NAME = "Dr Martin-Kinésithérapeute"


@pytest.fixture
def me() -> IdentityKeys:
    return IdentityKeys.generate(uuid.uuid4())


class TestSealedOnTheDevice:
    def test_a_name_survives_a_new_session_and_is_never_on_disk_in_clear(self, tmp_path, me):
        colleague = str(uuid.uuid4())
        Contacts(Profile(tmp_path), me).name_account(colleague, f"  {NAME}  ")
        assert Contacts(Profile(tmp_path), me).name_of(colleague) == NAME
        stored = (tmp_path / FILE).read_bytes()
        assert b"Martin" not in stored and colleague.encode() not in stored
        assert (tmp_path / FILE).stat().st_mode & 0o777 == 0o600

    def test_another_account_on_the_same_device_sees_none_of_them(self, tmp_path, me):
        colleague = str(uuid.uuid4())
        Contacts(Profile(tmp_path), me).name_account(colleague, NAME)
        other = Contacts(Profile(tmp_path), IdentityKeys.generate(uuid.uuid4()))
        assert other.name_of(colleague) is None
        other.name_account(colleague, "Martin")  # its own names, beside mine
        assert Contacts(Profile(tmp_path), me).name_of(colleague) == NAME

    def test_an_altered_file_is_reported_not_replaced(self, tmp_path, me):
        Contacts(Profile(tmp_path), me).name_account(str(uuid.uuid4()), NAME)
        path = tmp_path / FILE
        text = path.read_text()
        body = text.split("ecrin-ls1.")[1]
        flipped = ("B" if body[5] == "A" else "A").join([body[:5], body[6:]])
        path.write_text(text.replace(body, flipped))
        with pytest.raises(IntegrityError):
            Contacts(Profile(tmp_path), me).name_of(str(uuid.uuid4()))

    @pytest.mark.parametrize("bad", ["", "   ", "x" * 81, "tab\tinside\x00"])
    def test_an_unusable_name_is_refused(self, tmp_path, me, bad):
        with pytest.raises(InvalidInput):
            Contacts(Profile(tmp_path), me).name_account(str(uuid.uuid4()), bad)


class TestLabels:
    def test_you_the_patient_a_contact_an_invitee_and_a_stranger(self, tmp_path, me):
        profile = Profile(tmp_path)
        contacts = Contacts(profile, me)
        colleague, invitee, patient, stranger = (str(uuid.uuid4()) for _ in range(4))
        contacts.name_account(colleague, "Dr Martin")
        invitation = str(uuid.uuid4())
        contacts.name_invitation(invitation, "Mme Dupont, mère")
        assert contacts.label(invitee) == invitee[:8]  # not redeemed (bound) yet
        TrustStore(profile).bind(Binding(invitee, "ab" * 32, str(uuid.uuid4()), "invitee",
                                         invitation))
        labels = {a: contacts.label(a, patient_ids=frozenset({patient}),
                                    patient_name="Léa Dupont")
                  for a in (str(me.account_id), colleague, invitee, patient, stranger)}
        assert labels == {str(me.account_id): "you",
                          colleague: f"Dr Martin ({colleague[:8]})",
                          invitee: f"Mme Dupont, mère ({invitee[:8]})",
                          patient: f"Léa Dupont ({patient[:8]})",
                          stranger: stranger[:8]}

    def test_an_invitation_name_does_not_follow_an_inviter_binding(self, tmp_path, me):
        """Only an account that redeemed *my* invitation gets the name I gave it."""
        profile = Profile(tmp_path)
        contacts = Contacts(profile, me)
        invitation, inviter = str(uuid.uuid4()), str(uuid.uuid4())
        contacts.name_invitation(invitation, "Mme Dupont")
        TrustStore(profile).bind(Binding(inviter, "cd" * 32, str(uuid.uuid4()), "inviter",
                                         invitation))
        assert contacts.label(inviter) == inviter[:8]
