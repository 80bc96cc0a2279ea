"""Écrin client-side cryptography (pure library; PyNaCl for every primitive).

See ``docs/protocol.md`` for the key hierarchy and every byte format. Slow functions
(:func:`derive_account_keys`, :func:`create_account`, :func:`create_invitation`,
:func:`redeem_invitation`) run Argon2id; async callers must use ``asyncio.to_thread``.
"""

from ecrin_e2ee.account import (
    AccountSetup,
    WrappedIdentity,
    create_account,
    unwrap_identity,
    wrap_identity,
)
from ecrin_e2ee.at_rest import AtRestKey, AtRestKeyring, OneTimeCodeHash
from ecrin_e2ee.audit_head import AuditHead, AuditSigningKey, SignedAuditHead
from ecrin_e2ee.blind_index import SearchKey, normalise_ins, normalise_name
from ecrin_e2ee.errors import (
    DecryptionError,
    E2EEError,
    FormatError,
    IdentityMismatchError,
    InvalidCode,
)
from ecrin_e2ee.grants import (
    GrantTerms,
    Member,
    Rotation,
    grant_scope_keys,
    rekey_record_header,
    rotate_scope,
)
from ecrin_e2ee.identity import IdentityKeys, PublicIdentity
from ecrin_e2ee.invitation import (
    CreatedInvitation,
    InvitationCode,
    InvitationPayload,
    InvitationVerifier,
    RedeemedInvitation,
    check_redemption,
    create_invitation,
    redeem_invitation,
    redemption_proof,
)
from ecrin_e2ee.kdf import AccountKeys, KdfParams, KeyEncryptionKey, derive_account_keys, new_salt
from ecrin_e2ee.key_change import KeyChange, key_change_links
from ecrin_e2ee.keyring import (
    KeyringEntry,
    Permission,
    Relationship,
    Scope,
    ScopeKey,
    open_entry,
    seal_entry,
)
from ecrin_e2ee.local_seal import local_open, local_seal
from ecrin_e2ee.padding import padme
from ecrin_e2ee.record_header import RecordHeader
from ecrin_e2ee.records import (
    CHUNK_SIZE,
    EncryptedRecord,
    OpenedRecord,
    RecordDecryptor,
    RecordEncryptor,
    decrypt_to_file,
    encrypt_record,
    open_record,
    padded_content_length,
)
from ecrin_e2ee.recovery import RecoveryKey

__all__ = [
    "CHUNK_SIZE",
    "AccountKeys",
    "AccountSetup",
    "AtRestKey",
    "AtRestKeyring",
    "AuditHead",
    "AuditSigningKey",
    "DecryptionError",
    "E2EEError",
    "EncryptedRecord",
    "FormatError",
    "GrantTerms",
    "IdentityKeys",
    "IdentityMismatchError",
    "InvalidCode",
    "CreatedInvitation",
    "InvitationCode",
    "InvitationPayload",
    "InvitationVerifier",
    "KdfParams",
    "KeyChange",
    "KeyEncryptionKey",
    "KeyringEntry",
    "Member",
    "OneTimeCodeHash",
    "OpenedRecord",
    "Permission",
    "PublicIdentity",
    "RecordDecryptor",
    "RecordEncryptor",
    "RecordHeader",
    "RecoveryKey",
    "RedeemedInvitation",
    "Relationship",
    "Rotation",
    "Scope",
    "ScopeKey",
    "SearchKey",
    "SignedAuditHead",
    "WrappedIdentity",
    "create_account",
    "check_redemption",
    "create_invitation",
    "decrypt_to_file",
    "derive_account_keys",
    "encrypt_record",
    "grant_scope_keys",
    "key_change_links",
    "local_open",
    "local_seal",
    "new_salt",
    "normalise_ins",
    "normalise_name",
    "open_entry",
    "open_record",
    "padded_content_length",
    "padme",
    "redeem_invitation",
    "redemption_proof",
    "rekey_record_header",
    "rotate_scope",
    "seal_entry",
    "unwrap_identity",
    "wrap_identity",
]
