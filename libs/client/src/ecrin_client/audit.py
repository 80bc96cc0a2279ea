"""A patient file's access history: the audit chains of the services, verified here.

Each service keeps its own append-only chains per file: the sharing service one
(``file:<id>``: grants, invitations, revocations, expiries, rotations); the kms and the
records-api one per scope (``file:<id>:<scope>``: key releases and rotations; record reads,
writes and refused accesses) besides the file's (``file:<id>``: the kms's grants and
refused releases; events from before chains were per scope). A reader fetches the chain of
each scope it may read (``GET /v1/files/{id}`` -> ``scopes``), each one whole: a patient
holding the ``shared`` scope verifies that scope's history and never sees the clinical
one's. An event's hash is SHA-256 over the canonical JSON of (chain, seq, time, actor,
action, target, outcome, request_id, service, prev_hash); the first event's prev_hash is
64 zeros. The client recomputes every hash itself (:func:`verify_chain`), so a server that
edits, drops or reorders an event in the middle of a chain is caught.

Each service signs the head of every chain it serves (its last event: ``seq``, ``hash``,
and the time) with an audit key of its own, and sends the key's public half. The device
pins each service's key on first use (``service-keys.json`` in the profile) and refuses a
different key, a head whose signature does not verify, and a head that is not the last
event served. It keeps the signed head it verified of each chain (``audit-heads.json``)
and refuses a chain that does not extend it: a service cannot cut or rewrite what this
device saw without contradicting its own signature, which the device keeps. Every refusal
is an :class:`IntegrityError` (exit 7). On a first look a chain verifies only against
itself and the pinned key (``docs/sharing.md``, what remains possible).

:func:`to_fhir` exports the events as FHIR R4 ``AuditEvent`` resources in a ``Bundle``,
following the French "Traçabilité des événements" guide (profile ``tde-auditevent``):
``type`` = ``rest``, ``subtype`` = the RESTful interaction plus Écrin's own action code,
``agent.who`` = the account, ``source.observer`` = the service, ``entity`` = the patient
file and the target, ``outcome`` per the FHIR codes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ecrin_client.encoding import b64d, b64e
from ecrin_client.errors import EcrinError, IntegrityError, NotFound, PermissionDenied
from ecrin_client.pinning import account_uuid
from ecrin_e2ee import DecryptionError, FormatError, Scope, SignedAuditHead

if TYPE_CHECKING:
    from ecrin_client.profile import Profile
    from ecrin_client.transport import GatewayTransport

__all__ = ["AuditChain", "AuditTrail", "collect", "event_hash", "to_fhir", "verify_chain"]

GENESIS = "0" * 64
HASHED = ("chain", "seq", "time", "actor", "action", "target", "outcome", "request_id",
          "service", "prev_hash")
#: (service, path template): where each service serves a file's chain.
SOURCES = (("sharing", "/v1/files/{file_id}/audit"),
           ("kms", "/v1/keyrings/{file_id}/audit"),
           ("records-api", "/v1/records/audit?file_id={file_id}"))
#: service -> path template of a scope's chain, for the services that keep one per scope.
SCOPE_SOURCES = {"kms": "/v1/keyrings/{file_id}/audit?scope={scope}",
                 "records-api": "/v1/records/audit?file_id={file_id}&scope={scope}"}
SCOPES = tuple(scope.value for scope in Scope)


def event_hash(event: dict[str, Any]) -> str:
    fields = {k: event[k] for k in HASHED}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def verify_chain(events: Sequence[dict[str, Any]], *, chain: str | None = None,
                 service: str | None = None) -> int | None:
    """None when the events form one unbroken chain from its first event; otherwise the
    position (1-based) of the first event that does not verify."""
    previous = GENESIS
    for position, event in enumerate(events, start=1):
        try:
            ok = (event["seq"] == position and event["prev_hash"] == previous
                  and event_hash(event) == event["hash"]
                  and (chain is None or event["chain"] == chain)
                  and (service is None or event["service"] == service))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            return position
        previous = event["hash"]
    return None


class AuditChain(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    service: str
    chain: str
    #: False when the service does not expose this file's chain to this account.
    available: bool
    events: list[dict[str, Any]]
    #: None: verified; else the position of the first event that does not verify.
    broken_at: int | None = None
    #: The head the service signed for this chain, as served (JSON), once verified.
    signed_head: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return self.available and self.broken_at is None

    @property
    def scope(self) -> str | None:
        """The scope whose chain this is; None for the file's chain."""
        return scope_of(self.chain)


def scope_of(chain: str) -> str | None:
    """``file:<id>:<scope>`` -> the scope; ``file:<id>`` -> None."""
    parts = chain.split(":")
    return parts[2] if len(parts) == 3 else None


class AuditTrail(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    file_id: str
    chains: list[AuditChain]

    @property
    def verified(self) -> bool:
        return all(c.verified for c in self.chains if c.available)

    def events(self) -> list[dict[str, Any]]:
        """Every event of every chain, in time order."""
        merged = [e for c in self.chains for e in c.events]
        return sorted(merged, key=lambda e: (str(e.get("time")), str(e.get("service")),
                                             str(e.get("chain")), int(e.get("seq", 0))))

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "verified": self.verified,
                "chains": [{"service": c.service, "chain": c.chain, "available": c.available,
                            "events": len(c.events), "verified": c.verified,
                            "broken_at": c.broken_at, "signed_head": c.signed_head}
                           for c in self.chains],
                "events": self.events()}


HEADS = "audit-heads.json"
#: Each service's audit key (base64url), pinned the first time one of its heads verified.
SERVICE_KEYS = "service-keys.json"


def _seen(stored: Any) -> dict[str, Any] | None:
    """A stored head: signed (``{"head": {...}, ...}``) or older unsigned ``{seq, hash}``."""
    head = stored.get("head", stored) if isinstance(stored, dict) else None
    if not isinstance(head, dict):
        return None
    ok = isinstance(head.get("seq"), int) and isinstance(head.get("hash"), str)
    return head if ok else None


def _signed_head(service: str, chain: str, body: dict[str, Any],
                 events: list[dict[str, Any]], keys: dict[str, Any],
                 profile: Profile | None) -> tuple[SignedAuditHead, str]:
    """The head the service signed for ``events`` and its key, verified under the key
    pinned for the service (pinned now on first use); raises :class:`IntegrityError`."""
    try:
        signed = SignedAuditHead.from_json(body)
        key = b64d(body["audit_key"], what="audit key")
    except (FormatError, EcrinError, KeyError, TypeError):
        raise IntegrityError(f"the {service} sent its audit chain without a valid signed "
                             "head") from None
    pinned = keys.get(service)
    if pinned is not None and pinned != b64e(key):
        where = profile.home / SERVICE_KEYS if profile is not None else SERVICE_KEYS
        raise IntegrityError(
            f"the {service} signed its audit chain with a key that is not the one this "
            f"device pinned ({where}): refused. The operator replaced the key, or someone "
            "is serving a forged chain; only if the change was announced and checked out of "
            f"band, remove the {service} entry from that file to pin the new key.")
    try:
        signed.verify(key)
    except DecryptionError:
        raise IntegrityError(f"the {service}'s signature of its audit head does not "
                             "verify") from None
    head = signed.head
    last = events[-1] if events else {"seq": 0, "hash": GENESIS}
    if (head.service, head.chain, head.seq, head.hash) != (service, chain, len(events),
                                                          last.get("hash")):
        raise IntegrityError(f"the {service}'s signed audit head is not the last event of "
                             "the chain it served")
    if pinned is None and profile is not None:
        keys[service] = b64e(key)
        profile._write(SERVICE_KEYS, keys)
    return signed, b64e(key)


def _refuse_unless_extends(service: str, chain: str, events: list[dict[str, Any]],
                           stored: Any) -> None:
    """Refuse a chain that does not hold the head this device verified before."""
    seen = _seen(stored)
    if seen is None or seen["seq"] == 0:
        return
    seq, when = seen["seq"], seen.get("time")
    if seq > len(events) or events[seq - 1].get("hash") != seen["hash"]:
        raise IntegrityError(
            f"the {service}'s audit chain {chain} does not extend what this device verified "
            f"(event {seq}" + (f", signed {when}" if when else "") + "): events it saw were "
            f"cut or rewritten. The {service}'s signed head is kept in {HEADS} as evidence.")


async def readable_scopes(transport: GatewayTransport, file_id: str) -> list[str]:
    """The scopes of the file the caller may read, as the sharing service says (none when
    it does not know the caller on this file)."""
    try:
        body = (await transport.request("GET", f"/v1/files/{file_id}")).json()
    except (NotFound, PermissionDenied):
        return []
    scopes = body.get("scopes") if isinstance(body, dict) else None
    return [s for s in SCOPES if isinstance(scopes, dict) and s in scopes]


def sources(file_id: str, scopes: Sequence[str]) -> list[tuple[str, str, str]]:
    """(service, chain, path) of every chain to fetch: each service's file chain, and the
    kms's and the records-api's chain of each scope in ``scopes``."""
    out = []
    for service, template in SOURCES:
        out.append((service, f"file:{file_id}", template.format(file_id=file_id)))
        if service in SCOPE_SOURCES:
            out += [(service, f"file:{file_id}:{scope}",
                     SCOPE_SOURCES[service].format(file_id=file_id, scope=scope))
                    for scope in scopes]
    return out


async def collect(transport: GatewayTransport, file_id: str,
                  profile: Profile | None = None) -> AuditTrail:
    """Fetch each service's chains of the file (its file chain; for the kms and the
    records-api also the chain of each scope the caller may read), verify each one and its
    signed head (and, with the profile, the service's pinned key and the head this device
    verified before; then remember the new ones). Raises :class:`IntegrityError` on a
    forged, mismatched or rewound head, or a chain this device verified that a service now
    hides; a chain whose hashes break is reported, not raised."""
    heads: dict[str, Any] = {}
    keys: dict[str, Any] = {}
    if profile is not None:
        raw = profile._read(HEADS)
        heads = raw if isinstance(raw, dict) else {}
        raw = profile._read(SERVICE_KEYS)
        keys = raw if isinstance(raw, dict) else {}
    fid = account_uuid(file_id, "patient file id")
    chains = []
    for service, chain_name, path in sources(fid, await readable_scopes(transport, fid)):
        try:
            body = (await transport.request("GET", path)).json()
        except (NotFound, PermissionDenied):
            chains.append(AuditChain(service=service, chain=chain_name, available=False,
                                     events=[]))
            continue
        events = body.get("events") if isinstance(body, dict) else None
        if (not isinstance(events, list) or not all(isinstance(e, dict) for e in events)
                or body.get("chain") != chain_name or body.get("service") != service):
            raise IntegrityError(f"the {service} sent a malformed audit chain")
        signed, audit_key = _signed_head(service, chain_name, body, events, keys, profile)
        key = f"{service}:{chain_name}"
        _refuse_unless_extends(service, chain_name, events, heads.get(key))
        made = AuditChain(service=service, chain=chain_name, available=True, events=events,
                          broken_at=verify_chain(events, chain=chain_name, service=service),
                          signed_head=signed.to_json())
        chains.append(made)
        if made.verified:
            heads[key] = {**signed.to_json(), "audit_key": audit_key}
    if not any(c.available for c in chains):
        raise NotFound("no audit trail of this patient file for you")
    for chain in chains:
        kept = heads.get(f"{chain.service}:{chain.chain}")
        head = kept.get("head", kept) if isinstance(kept, dict) else None
        if not chain.available and isinstance(head, dict) and int(head.get("seq") or 0) > 0:
            # Other chains still answer: this one hides a chain this device verified.
            raise IntegrityError(
                f"the {chain.service} no longer serves the audit chain {chain.chain} of this "
                "file that this device verified before: refusing an audit trail with a "
                "chain hidden")
    if profile is not None and all(c.verified for c in chains if c.available):
        profile._write(HEADS, heads)
    return AuditTrail(file_id=fid, chains=chains)


# -- FHIR R4 AuditEvent (French "Traçabilité des événements" guide) ----------------------------

TDE_PROFILE = "https://interop.esante.gouv.fr/ig/fhir/tde/StructureDefinition/tde-auditevent"
EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
              "code": "rest", "display": "RESTful Operation"}
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ECRIN_ACTIONS = "urn:ecrin:audit-action"
URI = "urn:ietf:rfc:3986"
#: Écrin action -> (FHIR RESTful interaction, AuditEvent.action C/R/U/D/E)
ACTIONS: dict[str, tuple[str, str]] = {
    "keys.release": ("read", "R"), "keys.grant": ("create", "C"),
    "scope.rotate": ("update", "U"),
    "record.read": ("read", "R"), "record.content.read": ("read", "R"),
    "record.history": ("history-instance", "R"), "record.list": ("search-type", "E"),
    "record.headers.list": ("search-type", "E"),
    "record.create": ("create", "C"), "record.content.write": ("update", "U"),
    "record.version.create": ("update", "U"), "record.rekey": ("update", "U"),
    "record.wrap.restore": ("update", "U"), "record.delete": ("delete", "D"),
    "grant.create": ("create", "C"), "grant.activate": ("update", "U"),
    "grant.revoke": ("delete", "D"), "grant.expire": ("update", "U"),
    "invitation.create": ("create", "C"), "invitation.redeem": ("update", "U"),
    "invitation.cancel": ("delete", "D"),
}
OUTCOMES = {"ok": "0", "denied": "4", "failed": "8"}


def _urn(value: str) -> str:
    try:
        return f"urn:uuid:{uuid.UUID(value)}"
    except ValueError:
        return value


def audit_event(event: dict[str, Any], file_id: str) -> dict[str, Any]:
    action = str(event.get("action", ""))
    interaction, crud = ACTIONS.get(action, ("operation", "E"))
    outcome = OUTCOMES.get(str(event.get("outcome", "")), "8")
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ecrin:{event.get('hash')}")),
        "meta": {"profile": [TDE_PROFILE]},
        "type": EVENT_TYPE,
        "subtype": [{"system": INTERACTION, "code": interaction},
                    {"system": ECRIN_ACTIONS, "code": action}],
        "action": crud,
        "recorded": event.get("time"),
        "outcome": outcome,
        "agent": [{"who": {"identifier": {"system": URI, "value": _urn(str(event["actor"]))}}
                   if event.get("actor") not in (None, "anonymous")
                   else {"display": "anonymous"},
                   "requestor": True}],
        "source": {"site": "Écrin",
                   "observer": {"display": f"Écrin {event.get('service')}"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                       "security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": [
            {"what": {"identifier": {"system": URI, "value": _urn(file_id)}},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "1", "display": "Person"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                      "code": "1", "display": "Patient"},
             "description": "patient file (identifiers only; the content is end-to-end "
                            "encrypted)"},
            {"what": {"identifier": {"system": "urn:ecrin:target",
                                     "value": str(event.get("target"))}},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                      "code": "2", "display": "System Object"},
             "detail": [{"type": k, "valueString": str(event.get(k))}
                        for k in ("chain", "seq", "request_id", "prev_hash", "hash")]},
        ],
    }
    if outcome != "0":
        resource["outcomeDesc"] = str(event.get("outcome"))
    return resource


def to_fhir(trail: AuditTrail) -> dict[str, Any]:
    """A FHIR R4 ``Bundle`` (type ``collection``) of one ``AuditEvent`` per event, built
    with the ``fhir.resources`` models, so that an event that does not make a valid
    resource fails here rather than at the receiving system. (The models are those of
    R4B, 4.3.0: its Bundle and AuditEvent are R4's, element for element, and
    ``fhir.resources`` ships no 4.0.1 models for pydantic 2.)"""
    from fhir.resources.R4B.auditevent import AuditEvent
    from fhir.resources.R4B.bundle import Bundle, BundleEntry

    events = trail.events()
    entries = [BundleEntry(fullUrl=f"urn:uuid:{resource['id']}",
                           resource=AuditEvent.model_validate(resource))
               for resource in (audit_event(e, trail.file_id) for e in events)]
    bundle = Bundle(type="collection", entry=entries or None,
                    timestamp=events[-1]["time"] if events else None)
    exported: dict[str, Any] = json.loads(bundle.model_dump_json(exclude_none=True))
    return exported
