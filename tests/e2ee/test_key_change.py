"""Key-change statements: only the old key can vouch for a new identity."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    FormatError,
    IdentityKeys,
    IdentityMismatchError,
    KeyChange,
    PublicIdentity,
    key_change_links,
)
from ecrin_e2ee._wire import b64e
from ecrin_e2ee.key_change import _statement


@pytest.fixture
def old(alice: IdentityKeys) -> IdentityKeys:
    return alice


@pytest.fixture
def new(alice: IdentityKeys) -> IdentityKeys:
    return IdentityKeys.generate(alice.account_id)


class TestKeyChange:
    def test_signed_by_the_old_key_verifies(self, old: IdentityKeys, new: IdentityKeys) -> None:
        change = KeyChange.sign(old, new.public_identity())
        change.verify(old.public_identity(), new.public_identity())
        assert change.old_fingerprint == old.public_identity().fingerprint()
        assert change.new_fingerprint == new.public_identity().fingerprint()
        assert change.changed_at.tzinfo is not None

    def test_json_round_trip(self, old: IdentityKeys, new: IdentityKeys) -> None:
        change = KeyChange.sign(old, new.public_identity())
        assert KeyChange.from_json(change.to_json()) == change

    def test_signed_by_the_new_key_is_refused(self, old: IdentityKeys, new: IdentityKeys
                                              ) -> None:
        """A server (or a thief of a session) makes a new identity and signs the statement
        with it: it names the old fingerprint but is not the old key's signature."""
        statement = KeyChange.sign(old, new.public_identity())
        by_new = KeyChange(statement.account_id, statement.old_fingerprint,
                           statement.new_fingerprint, statement.changed_at,
                           new.sign(statement.signed_bytes()))
        with pytest.raises(IdentityMismatchError):
            by_new.verify(old.public_identity(), new.public_identity())

    def test_signed_by_a_third_key_is_refused(self, old: IdentityKeys, new: IdentityKeys,
                                              mallory: IdentityKeys) -> None:
        statement = KeyChange.sign(old, new.public_identity())
        by_mallory = KeyChange(statement.account_id, statement.old_fingerprint,
                               statement.new_fingerprint, statement.changed_at,
                               mallory.sign(statement.signed_bytes()))
        with pytest.raises(IdentityMismatchError):
            by_mallory.verify(old.public_identity(), new.public_identity())

    def test_for_another_new_identity_is_refused(self, old: IdentityKeys, new: IdentityKeys
                                                 ) -> None:
        other = IdentityKeys.generate(old.account_id).public_identity()
        change = KeyChange.sign(old, new.public_identity())
        with pytest.raises(IdentityMismatchError):
            change.verify(old.public_identity(), other)

    def test_from_another_old_identity_is_refused(self, old: IdentityKeys, new: IdentityKeys
                                                  ) -> None:
        other = IdentityKeys.generate(old.account_id)
        change = KeyChange.sign(other, new.public_identity())
        with pytest.raises(IdentityMismatchError):
            change.verify(old.public_identity(), new.public_identity())

    def test_another_account_is_refused(self, old: IdentityKeys, mallory: IdentityKeys) -> None:
        with pytest.raises(ValueError):
            KeyChange.sign(old, mallory.public_identity())
        theirs = IdentityKeys.generate(mallory.account_id)
        change = KeyChange.sign(mallory, theirs.public_identity())
        with pytest.raises(IdentityMismatchError):
            change.verify(old.public_identity(), theirs.public_identity())

    @pytest.mark.parametrize("name", ["account_id", "old_fingerprint", "new_fingerprint",
                                      "changed_at", "signature"])
    def test_every_field_is_covered(self, old: IdentityKeys, new: IdentityKeys, name: str
                                    ) -> None:
        obj = KeyChange.sign(old, new.public_identity()).to_json()
        if name == "account_id":
            obj[name] = str(uuid.uuid4())
        elif name == "changed_at":
            obj[name] += 1
        else:
            raw = bytearray(getattr(KeyChange.from_json(obj), name))
            raw[7] ^= 0x40
            obj[name] = b64e(bytes(raw))
        with pytest.raises(IdentityMismatchError):
            KeyChange.from_json(obj).verify(old.public_identity(), new.public_identity())

    @pytest.mark.parametrize("patch", [
        {"format": 2}, {"changed_at": 0}, {"changed_at": -5}, {"changed_at": "1772357400"},
        {"changed_at": True}, {"changed_at": 2**64}, {"signature": "AAAA"},
        {"old_fingerprint": "not base64!"}, {"account_id": "nope"},
    ])
    def test_malformed_json(self, old: IdentityKeys, new: IdentityKeys, patch: dict) -> None:
        obj = {**KeyChange.sign(old, new.public_identity()).to_json(), **patch}
        with pytest.raises(FormatError):
            KeyChange.from_json(obj)

    def test_missing_field(self, old: IdentityKeys, new: IdentityKeys) -> None:
        obj = KeyChange.sign(old, new.public_identity()).to_json()
        del obj["signature"]
        with pytest.raises(FormatError):
            KeyChange.from_json(obj)

    def test_a_change_to_the_same_identity_is_malformed(self, old: IdentityKeys) -> None:
        with pytest.raises(FormatError):
            KeyChange.sign(old, old.public_identity())

    @settings(max_examples=25, deadline=None)
    @given(seconds=st.integers(min_value=1, max_value=253_402_300_799))
    def test_any_time_round_trips(self, seconds: int) -> None:
        account = uuid.uuid4()
        old, new = IdentityKeys.generate(account), IdentityKeys.generate(account)
        base = KeyChange.sign(old, new.public_identity())
        when = datetime.fromtimestamp(seconds, UTC)
        signed = _statement(base.account_id, base.old_fingerprint, base.new_fingerprint, when)
        change = KeyChange(base.account_id, base.old_fingerprint, base.new_fingerprint, when,
                           old.sign(signed))
        parsed = KeyChange.from_json(change.to_json())
        assert parsed == change
        parsed.verify(old.public_identity(), new.public_identity())


class TestKeyChangeLinks:
    def _history(self, n: int) -> tuple[list[IdentityKeys], list[tuple[PublicIdentity,
                                                                       KeyChange]]]:
        account = uuid.uuid4()
        keys = [IdentityKeys.generate(account) for _ in range(n)]
        history = [(keys[i].public_identity(), KeyChange.sign(keys[i],
                                                              keys[i + 1].public_identity()))
                   for i in range(n - 1)]
        return keys, history

    def test_a_chain_from_the_pinned_key_links(self) -> None:
        keys, history = self._history(4)
        current = keys[-1].public_identity()
        for pinned in keys[:-1]:
            assert key_change_links(pinned.public_identity().fingerprint(), history, current)

    def test_an_unknown_pin_does_not_link(self, mallory: IdentityKeys) -> None:
        keys, history = self._history(3)
        assert not key_change_links(mallory.public_identity().fingerprint(), history,
                                    keys[-1].public_identity())
        assert not key_change_links(keys[0].public_identity().fingerprint(), [],
                                    keys[-1].public_identity())

    def test_a_gap_does_not_link(self) -> None:
        keys, history = self._history(4)
        del history[1]
        assert not key_change_links(keys[0].public_identity().fingerprint(), history,
                                    keys[-1].public_identity())

    def test_a_rollback_to_an_older_key_does_not_link(self) -> None:
        """The server serves the pinned key's predecessor as current: nothing signed by the
        newer key vouches for going back."""
        keys, history = self._history(3)
        assert not key_change_links(keys[2].public_identity().fingerprint(), history[:1],
                                    keys[1].public_identity())
        assert not key_change_links(keys[1].public_identity().fingerprint(), history,
                                    keys[0].public_identity())

    def test_a_forged_last_step_does_not_link(self, mallory: IdentityKeys) -> None:
        keys, history = self._history(3)
        intruder = IdentityKeys.generate(keys[0].account_id)
        previous, statement = history[-1]
        forged = KeyChange(statement.account_id, statement.old_fingerprint,
                           intruder.public_identity().fingerprint(), statement.changed_at,
                           intruder.sign(statement.signed_bytes()))
        history[-1] = (previous, forged)
        assert not key_change_links(keys[0].public_identity().fingerprint(), history,
                                    intruder.public_identity())
