from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    DecryptionError,
    GrantTerms,
    IdentityKeys,
    InvitationCode,
    InvitationPayload,
    KdfParams,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    create_invitation,
    grant_scope_keys,
    open_entry,
    redeem_invitation,
)
from ecrin_e2ee._wire import b64d, b64e


class TestInvitation:
    def test_redeem_and_rewrap_to_the_new_identity(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        keys = [
            ScopeKey.generate(file_id, Scope.SHARED, 1),
            ScopeKey.generate(file_id, Scope.ADMINISTRATIVE, 4),
        ]
        code, payload = create_invitation(keys, params=fast_params)
        stored = payload.to_json()
        assert code.to_text() not in str(stored) and b64e(code.to_bytes()) not in str(stored)
        assert stored["lookup_id"] == code.lookup_id()
        typed = InvitationCode.from_text(code.to_text().lower())
        redeemed = redeem_invitation(typed, InvitationPayload.from_json(stored))
        assert redeemed == keys
        parent = IdentityKeys.generate(uuid.uuid4())
        entries = grant_scope_keys(
            redeemed,
            parent.public_identity(),
            GrantTerms(Relationship.PARENT, frozenset({Permission.READ})),
            granter=parent,
        )
        assert [open_entry(e, parent, parent.public_identity()) for e in entries] == keys

    def test_lookup_id_is_not_the_payload_key(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        code, payload = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], params=fast_params
        )
        assert len(b64d(code.lookup_id())) == 16
        assert InvitationCode.generate().lookup_id() != code.lookup_id()

    def test_wrong_code(self, file_id: uuid.UUID, fast_params: KdfParams) -> None:
        _, payload = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], params=fast_params
        )
        with pytest.raises(DecryptionError):
            redeem_invitation(InvitationCode.generate(), payload)

    @pytest.mark.parametrize(
        "field", ["ciphertext", "nonce", "salt", "file_id", "lookup_id", "kdf"]
    )
    def test_tamper(self, file_id: uuid.UUID, fast_params: KdfParams, field: str) -> None:
        code, payload = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], params=fast_params
        )
        obj = payload.to_json()
        if field == "file_id":
            obj[field] = str(uuid.uuid4())
        elif field == "lookup_id":
            obj[field] = InvitationCode.generate().lookup_id()
        elif field == "kdf":
            obj[field] = {**obj[field], "opslimit": obj[field]["opslimit"] + 1}
        else:
            raw = bytearray(b64d(obj[field]))
            raw[-1] ^= 1
            obj[field] = b64e(bytes(raw))
        with pytest.raises(DecryptionError):
            redeem_invitation(code, InvitationPayload.from_json(obj))

    def test_params_travel_with_the_payload(self, file_id: uuid.UUID) -> None:
        params = KdfParams(2, 2**16)
        code, payload = create_invitation([ScopeKey.generate(file_id, Scope.SHARED)], params=params)
        assert InvitationPayload.from_json(payload.to_json()).params == params
        assert redeem_invitation(code, payload)

    def test_keys_of_several_files_are_refused(self, fast_params: KdfParams) -> None:
        with pytest.raises(ValueError):
            create_invitation(
                [
                    ScopeKey.generate(uuid.uuid4(), Scope.SHARED),
                    ScopeKey.generate(uuid.uuid4(), Scope.SHARED),
                ],
                params=fast_params,
            )

    @settings(max_examples=10, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from(list(Scope)), st.integers(1, 2**32 - 1)),
            min_size=1,
            max_size=5,
        )
    )
    def test_hypothesis_round_trip(self, specs: list[tuple[Scope, int]]) -> None:
        file_id = uuid.uuid4()
        keys = [ScopeKey.generate(file_id, s, v) for s, v in specs]
        code, payload = create_invitation(keys, params=KdfParams.insecure_for_tests())
        back = redeem_invitation(
            InvitationCode.from_text(code.to_text()), InvitationPayload.from_json(payload.to_json())
        )
        assert back == keys
