from __future__ import annotations

import dataclasses
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrin_e2ee import (
    DecryptionError,
    FormatError,
    GrantTerms,
    IdentityKeys,
    InvitationCode,
    InvitationPayload,
    InvitationVerifier,
    KdfParams,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    check_redemption,
    create_invitation,
    grant_scope_keys,
    open_entry,
    redeem_invitation,
)
from ecrin_e2ee._wire import b64d, b64e

INVITER_KEYS = IdentityKeys.generate(uuid.uuid4())
INVITER = INVITER_KEYS
INVITEE_KEYS = IdentityKeys.generate(uuid.uuid4())
INVITEE = INVITEE_KEYS.public_identity()


class TestInvitation:
    def test_redeem_and_rewrap_to_the_new_identity(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        keys = [
            ScopeKey.generate(file_id, Scope.SHARED, 1),
            ScopeKey.generate(file_id, Scope.ADMINISTRATIVE, 4),
        ]
        code, payload, _ = create_invitation(keys, inviter=INVITER, params=fast_params)
        stored = payload.to_json()
        assert code.to_text() not in str(stored) and b64e(code.to_bytes()) not in str(stored)
        assert stored["lookup_id"] == code.lookup_id()
        typed = InvitationCode.from_text(code.to_text().lower())
        parent = IdentityKeys.generate(uuid.uuid4())
        redeemed = redeem_invitation(typed, InvitationPayload.from_json(stored),
                                     parent.public_identity()).scope_keys
        assert redeemed == keys
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
        code, payload, _ = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], inviter=INVITER, params=fast_params
        )
        assert len(b64d(code.lookup_id())) == 16
        assert InvitationCode.generate().lookup_id() != code.lookup_id()

    def test_wrong_code(self, file_id: uuid.UUID, fast_params: KdfParams) -> None:
        _, payload, _ = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], inviter=INVITER, params=fast_params
        )
        with pytest.raises(DecryptionError):
            redeem_invitation(InvitationCode.generate(), payload, INVITEE)

    @pytest.mark.parametrize(
        "field", ["ciphertext", "nonce", "salt", "file_id", "lookup_id", "kdf"]
    )
    def test_tamper(self, file_id: uuid.UUID, fast_params: KdfParams, field: str) -> None:
        code, payload, _ = create_invitation(
            [ScopeKey.generate(file_id, Scope.SHARED)], inviter=INVITER, params=fast_params
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
            redeem_invitation(code, InvitationPayload.from_json(obj), INVITEE)

    def test_params_travel_with_the_payload(self, file_id: uuid.UUID) -> None:
        params = KdfParams(2, 2**16)
        code, payload, _ = create_invitation([ScopeKey.generate(file_id, Scope.SHARED)],
                                             inviter=INVITER, params=params)
        assert InvitationPayload.from_json(payload.to_json()).params == params
        assert redeem_invitation(code, payload, INVITEE).scope_keys

    def test_keys_of_several_files_are_refused(self, fast_params: KdfParams) -> None:
        with pytest.raises(ValueError):
            create_invitation(
                [
                    ScopeKey.generate(uuid.uuid4(), Scope.SHARED),
                    ScopeKey.generate(uuid.uuid4(), Scope.SHARED),
                ],
                inviter=INVITER,
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
        code, payload, _ = create_invitation(keys, inviter=INVITER,
                                             params=KdfParams.insecure_for_tests())
        back = redeem_invitation(
            InvitationCode.from_text(code.to_text()),
            InvitationPayload.from_json(payload.to_json()),
            INVITEE,
        )
        assert back.scope_keys == keys


class TestBindingBothEnds:
    """The code binds the inviter's identity for the invitee, and the redemption proof binds
    the invitee's identity for the inviter: a server without the code can swap neither."""

    def made(self, file_id: uuid.UUID, fast_params: KdfParams):
        return create_invitation([ScopeKey.generate(file_id, Scope.SHARED)],
                                 inviter=INVITER_KEYS, params=fast_params)

    def test_the_invitee_learns_the_inviters_fingerprint_from_the_code(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        code, payload, _ = self.made(file_id, fast_params)
        redeemed = redeem_invitation(code, payload, INVITEE)
        assert redeemed.inviter_id == INVITER_KEYS.account_id
        assert redeemed.inviter_fingerprint == INVITER_KEYS.public_identity().fingerprint()

    def test_the_inviter_checks_the_redeemers_proof(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        code, payload, verifier = self.made(file_id, fast_params)
        proof = redeem_invitation(code, payload, INVITEE).proof
        stored = InvitationVerifier.from_json(verifier.to_json())
        check_redemption(stored, INVITER_KEYS, lookup_id=code.lookup_id(), file_id=file_id,
                         redeemer=INVITEE, proof=proof)

    def test_a_substituted_redeemer_identity_fails(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        """The server serves another key for the account that redeemed (same account id)."""
        code, payload, verifier = self.made(file_id, fast_params)
        proof = redeem_invitation(code, payload, INVITEE).proof
        swapped = IdentityKeys.generate(INVITEE.account_id).public_identity()
        with pytest.raises(DecryptionError):
            check_redemption(verifier, INVITER_KEYS, lookup_id=code.lookup_id(),
                             file_id=file_id, redeemer=swapped, proof=proof)

    def test_a_proof_made_without_the_code_fails(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        code, payload, verifier = self.made(file_id, fast_params)
        other_code, other_payload, _ = self.made(file_id, fast_params)
        forged = redeem_invitation(other_code, other_payload, INVITEE).proof
        for proof in (forged, bytes(32), b"short"):
            with pytest.raises(DecryptionError):
                check_redemption(verifier, INVITER_KEYS, lookup_id=code.lookup_id(),
                                 file_id=file_id, redeemer=INVITEE, proof=proof)

    @pytest.mark.parametrize("what", ["other-owner", "other-lookup", "other-file", "flipped",
                                      "server-made"])
    def test_the_verifier_opens_only_for_the_inviter_and_its_invitation(
        self, file_id: uuid.UUID, fast_params: KdfParams, what: str
    ) -> None:
        code, payload, verifier = self.made(file_id, fast_params)
        proof = redeem_invitation(code, payload, INVITEE).proof
        owner, lookup, fid = INVITER_KEYS, code.lookup_id(), file_id
        if what == "other-owner":
            other = IdentityKeys.generate(uuid.uuid4())
            owner = IdentityKeys(INVITER_KEYS.account_id, other.encryption_key,
                                 other.signing_key)
        elif what == "other-lookup":
            lookup = InvitationCode.generate().lookup_id()
        elif what == "other-file":
            fid = uuid.uuid4()
        elif what == "flipped":
            raw = bytearray(verifier.ciphertext)
            raw[0] ^= 1
            verifier = InvitationVerifier(verifier.nonce, bytes(raw))
        else:  # a verifier the server made for a proof key of its own
            _, _, verifier = create_invitation([ScopeKey.generate(file_id, Scope.SHARED)],
                                               inviter=IdentityKeys.generate(uuid.uuid4()),
                                               params=fast_params)
        with pytest.raises(DecryptionError):
            check_redemption(verifier, owner, lookup_id=lookup, file_id=fid, redeemer=INVITEE,
                             proof=proof)

    def test_argon2_parameters_above_the_ceiling_are_refused_before_deriving(
        self, file_id: uuid.UUID, fast_params: KdfParams
    ) -> None:
        code, payload, _ = self.made(file_id, fast_params)
        hostile = dataclasses.replace(payload, params=KdfParams(2**32 - 1, fast_params.memlimit))
        with pytest.raises(DecryptionError):
            redeem_invitation(code, hostile, INVITEE)

    def test_a_version_1_payload_is_refused(self, file_id: uuid.UUID,
                                            fast_params: KdfParams) -> None:
        _, payload, _ = self.made(file_id, fast_params)
        with pytest.raises(FormatError):
            InvitationPayload.from_json({**payload.to_json(), "version": 1})
