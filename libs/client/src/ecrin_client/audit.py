"""A patient file's access history: the audit chains of the services, verified here.

Each service keeps its own append-only chain per file (``file:<id>``): the sharing service
(grants, invitations, revocations, expiries, rotations), the kms (key releases, grants,
rotations) and the records-api (record reads and writes) when it exposes its chain. An
event's hash is SHA-256 over the canonical JSON of (chain, seq, time, actor, action, target,
outcome, request_id, service, prev_hash); the first event's prev_hash is 64 zeros. The
client recomputes every hash itself (:func:`verify_chain`), so a server that edits, drops
or reorders an event in the middle of a chain is caught. Given the profile, the client also
remembers the last event it verified of each chain (``audit-heads.json``): a server that
later cuts or rewrites what this device already saw is caught too (a first look cannot
tell a cut tail).

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

from ecrin_client.errors import IntegrityError, NotFound, PermissionDenied
from ecrin_client.pinning import account_uuid

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
    model_config = ConfigDict(frozen=True)

    service: str
    chain: str
    #: False when the service does not expose this file's chain to this account.
    available: bool
    events: list[dict[str, Any]]
    #: None: verified; else the position of the first event that does not verify.
    broken_at: int | None = None
    #: The chain no longer holds the last event this device verified (cut or rewritten).
    rewound: bool = False

    @property
    def verified(self) -> bool:
        return self.available and self.broken_at is None and not self.rewound


class AuditTrail(BaseModel):
    model_config = ConfigDict(frozen=True)

    file_id: str
    chains: list[AuditChain]

    @property
    def verified(self) -> bool:
        return all(c.verified for c in self.chains if c.available)

    def events(self) -> list[dict[str, Any]]:
        """Every event of every chain, in time order."""
        merged = [e for c in self.chains for e in c.events]
        return sorted(merged, key=lambda e: (str(e.get("time")), str(e.get("service")),
                                             int(e.get("seq", 0))))

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "verified": self.verified,
                "chains": [{"service": c.service, "chain": c.chain, "available": c.available,
                            "events": len(c.events), "verified": c.verified,
                            "broken_at": c.broken_at, "rewound": c.rewound}
                           for c in self.chains],
                "events": self.events()}


HEADS = "audit-heads.json"


def _rewound(events: list[dict[str, Any]], head: Any) -> bool:
    if not isinstance(head, dict) or not isinstance(head.get("seq"), int):
        return False
    seq = head["seq"]
    return seq > len(events) or events[seq - 1].get("hash") != head.get("hash")


async def collect(transport: GatewayTransport, file_id: str,
                  profile: Profile | None = None) -> AuditTrail:
    """Fetch the file's chain from each service and verify each one (and, with the
    profile, against the last event of it this device verified; then remember the new)."""
    heads: dict[str, Any] = {}
    if profile is not None:
        raw = profile._read(HEADS)
        heads = raw if isinstance(raw, dict) else {}
    fid = account_uuid(file_id, "patient file id")
    chain_name = f"file:{fid}"
    chains = []
    for service, template in SOURCES:
        try:
            body = (await transport.request("GET", template.format(file_id=fid))).json()
        except (NotFound, PermissionDenied):
            chains.append(AuditChain(service=service, chain=chain_name, available=False,
                                     events=[]))
            continue
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or body.get("chain") != chain_name:
            raise IntegrityError(f"the {service} sent a malformed audit chain")
        key = f"{service}:{chain_name}"
        made = AuditChain(service=service, chain=chain_name, available=True, events=events,
                          broken_at=verify_chain(events, chain=chain_name, service=service),
                          rewound=_rewound(events, heads.get(key)))
        chains.append(made)
        if made.verified and events:
            heads[key] = {"seq": events[-1]["seq"], "hash": events[-1]["hash"]}
    if not any(c.available for c in chains):
        raise NotFound("no audit trail of this patient file for you")
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
    "record.delete": ("delete", "D"),
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
    """A FHIR R4 ``Bundle`` (type ``collection``) of one ``AuditEvent`` per event."""
    events = trail.events()
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
                  for resource in (audit_event(e, trail.file_id) for e in events)]}
    if events:
        bundle["timestamp"] = events[-1]["time"]
    return bundle
