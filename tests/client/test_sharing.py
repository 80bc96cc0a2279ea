"""Sharing and audit pieces that need no server: the audit-chain verifier, the FHIR
export, a parent's end date, and the CLI's --until and --scopes parsing."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest
from ecrin_client.audit import (
    GENESIS,
    TDE_PROFILE,
    AuditChain,
    AuditTrail,
    event_hash,
    to_fhir,
    verify_chain,
)
from ecrin_client.cli.share import parse_scopes, parse_until
from ecrin_client.encoding import b64e
from ecrin_client.errors import IntegrityError, InvalidInput
from ecrin_client.sharing import eighteenth_birthday

from ecrin_e2ee import AuditSigningKey, SignedAuditHead

FILE = str(uuid.uuid4())


def chain(actions: list[str], service: str = "kms", scope: str | None = None) -> list[dict]:
    events, previous = [], GENESIS
    name = f"file:{FILE}" + (f":{scope}" if scope else "")
    for seq, action in enumerate(actions, start=1):
        event = {"chain": name, "seq": seq,
                 "time": f"2026-11-28T10:00:0{seq}.000000+00:00", "actor": str(uuid.uuid4()),
                 "action": action, "target": "shared:v1", "outcome": "ok", "request_id": "r",
                 "service": service, "prev_hash": previous}
        event["hash"] = event_hash(event)
        events.append(event)
        previous = event["hash"]
    return events


class TestVerifyChain:
    def test_an_intact_chain_verifies(self):
        assert verify_chain(chain(["keys.release", "keys.grant", "scope.rotate"]),
                            chain=f"file:{FILE}", service="kms") is None

    @pytest.mark.parametrize("field", ["actor", "action", "target", "time", "outcome"])
    def test_an_edited_event_is_caught_where_it_was_edited(self, field):
        events = chain(["keys.release", "keys.grant", "scope.rotate"])
        events[1][field] = "edited"
        assert verify_chain(events) == 2

    def test_a_dropped_or_reordered_event_is_caught(self):
        events = chain(["a", "b", "c"])
        assert verify_chain([events[0], events[2]]) == 2
        assert verify_chain([events[1], events[0], events[2]]) == 1

    def test_an_event_of_another_chain_or_service_is_caught(self):
        assert verify_chain(chain(["a"]), service="sharing") == 1
        assert verify_chain(chain(["a"]), chain="file:other") == 1


class TestFhirExport:
    def test_a_bundle_of_tde_audit_events(self):
        events = chain(["keys.release", "grant.revoke"])
        trail = AuditTrail(file_id=FILE, chains=[AuditChain(
            service="kms", chain=f"file:{FILE}", available=True, events=events)])
        bundle = to_fhir(trail)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        first, second = (e["resource"] for e in bundle["entry"])
        assert first["resourceType"] == "AuditEvent"
        assert first["meta"]["profile"] == [TDE_PROFILE]
        assert first["type"]["code"] == "rest"
        assert [c["code"] for c in first["subtype"]] == ["read", "keys.release"]
        assert (first["action"], second["action"]) == ("R", "D")
        assert first["outcome"] == "0"
        assert dt.datetime.fromisoformat(first["recorded"]) == \
            dt.datetime.fromisoformat(events[0]["time"])
        assert first["agent"][0]["who"]["identifier"]["value"] == f"urn:uuid:{events[0]['actor']}"
        assert first["agent"][0]["requestor"] is True
        assert first["entity"][0]["what"]["identifier"]["value"] == f"urn:uuid:{FILE}"
        assert {"type": "hash", "valueString": events[0]["hash"]} in first["entity"][1]["detail"]
        assert len({e["fullUrl"] for e in bundle["entry"]}) == 2

    def test_the_bundle_is_a_valid_fhir_resource(self):
        from fhir.resources.R4B.auditevent import AuditEvent
        from fhir.resources.R4B.bundle import Bundle

        events = chain(["record.create", "record.read", "keys.release"])
        trail = AuditTrail(file_id=FILE, chains=[AuditChain(
            service="records-api", chain=f"file:{FILE}", available=True, events=events)])
        bundle = Bundle.model_validate(to_fhir(trail))
        assert bundle.type == "collection" and len(bundle.entry) == 3
        assert all(isinstance(e.resource, AuditEvent) for e in bundle.entry)

    def test_an_event_that_is_no_valid_audit_event_is_refused(self):
        from pydantic import ValidationError

        (event,) = chain(["record.read"])
        trail = AuditTrail(file_id=FILE, chains=[AuditChain(
            service="records-api", chain=f"file:{FILE}", available=True,
            events=[{**event, "time": "yesterday"}])])
        with pytest.raises(ValidationError, match="recorded"):
            to_fhir(trail)


class TestParentEndDate:
    def test_the_18th_birthday_at_midnight_utc(self):
        assert eighteenth_birthday(dt.date(2014, 6, 3)) == dt.datetime(2032, 6, 3,
                                                                       tzinfo=dt.UTC)

    def test_born_on_29_february(self):
        assert eighteenth_birthday(dt.date(2012, 2, 29)) == dt.datetime(2030, 3, 1,
                                                                        tzinfo=dt.UTC)


class TestOptions:
    def test_until_a_day_means_until_the_end_of_that_day(self):
        assert parse_until("2026-12-05") == dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
        assert parse_until("2026-12-05T12:00:00+01:00").hour == 12
        with pytest.raises(InvalidInput):
            parse_until("next week")

    def test_scopes_take_the_default_access_unless_given(self):
        defaults = {"shared": "append", "administrative": "read"}
        assert parse_scopes("shared,administrative=read", defaults) == {
            "shared": "append", "administrative": "read"}
        assert parse_scopes("shared=read", defaults) == {"shared": "read"}
        assert parse_scopes(None, defaults) is None


#: The audit key of each service in these tests.
KEYS = {service: AuditSigningKey.generate() for service in ("sharing", "kms")}


KEYS["records-api"] = AuditSigningKey.generate()
SERVICE_OF = {"files": "sharing", "keyrings": "kms", "records": "records-api"}


def served(service: str, events: list[dict], key: AuditSigningKey | None = None,
           scope: str | None = None) -> dict:
    """What a service's audit route answers: the events and their signed head."""
    key = key or KEYS[service]
    name = f"file:{FILE}" + (f":{scope}" if scope else "")
    last = events[-1] if events else {"seq": 0, "hash": GENESIS}
    signed = key.sign(service=service, chain=name, seq=last["seq"], hash=last["hash"])
    return {"service": service, "chain": name, "events": events, **signed.to_json(),
            "audit_key": b64e(key.public_key)}


class TestCollect:
    """The chains as served, verified with their signed heads, and held against what this
    device saw before."""

    @staticmethod
    async def fetch(answers: dict[str, list[dict] | dict], profile,
                    scopes: dict[str, str] | None = None, paths: list[str] | None = None):
        """``answers``: per chain (``service`` or ``service:scope``), its events (signed
        here with its key) or a whole body; a chain not in it is 404. ``scopes``: what
        ``GET /v1/files/{id}`` says the caller may read. ``paths`` collects what was asked."""
        from ecrin_client.audit import collect
        from ecrin_client.profile import StoredTokens
        from ecrin_client.transport import GatewayTransport

        not_found = httpx.Response(404, json={"type": "about:blank", "status": 404})

        def handler(request: httpx.Request) -> httpx.Response:
            if paths is not None:
                paths.append(str(request.url.copy_with(scheme=None, host=None)))
            if request.url.path == f"/v1/files/{FILE}":
                return httpx.Response(200, json={"id": FILE, "scopes": scopes or {}})
            service = SERVICE_OF.get(request.url.path.split("/")[2])
            scope = request.url.params.get("scope")
            answer = answers.get(f"{service}:{scope}" if scope else str(service))
            if answer is None:
                return not_found
            return httpx.Response(200, json=answer if isinstance(answer, dict)
                                  else served(str(service), answer, scope=scope))

        transport = GatewayTransport("https://ecrin.test", on_tokens=lambda _t: None,
                                     tokens=StoredTokens(access_token="a", refresh_token="r",
                                                         session_id="s"),
                                     transport=httpx.MockTransport(handler))
        try:
            return await collect(transport, FILE, profile)
        finally:
            await transport.aclose()

    async def test_verified_chains_and_the_records_api_not_served(self, tmp_path):
        from ecrin_client.profile import Profile

        answers = {"sharing": chain(["grant.create"], "sharing"),
                   "kms": chain(["keys.release", "keys.grant"])}
        trail = await self.fetch(answers, Profile(tmp_path))
        assert trail.verified
        assert {c.service: c.available for c in trail.chains} == {
            "sharing": True, "kms": True, "records-api": False}
        # One timeline, in time order (then by service).
        assert [e["action"] for e in trail.events()] == ["keys.release", "grant.create",
                                                         "keys.grant"]

    async def test_the_keys_are_pinned_and_the_signed_heads_kept(self, tmp_path):
        from ecrin_client.audit import HEADS, SERVICE_KEYS
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        kms = chain(["keys.release", "keys.grant"])
        await self.fetch({"sharing": [], "kms": kms}, profile)
        assert profile._read(SERVICE_KEYS) == {s: b64e(KEYS[s].public_key)
                                               for s in ("sharing", "kms")}
        kept = profile._read(HEADS)[f"kms:file:{FILE}"]
        assert (kept["head"]["seq"], kept["head"]["hash"]) == (2, kms[-1]["hash"])
        SignedAuditHead.from_json(kept).verify(KEYS["kms"].public_key)

    async def test_a_tail_cut_after_this_device_saw_it_is_refused(self, tmp_path):
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        full = {"sharing": chain(["grant.create", "grant.revoke"], "sharing"),
                "kms": chain(["keys.release"])}
        assert (await self.fetch(full, profile)).verified
        cut = {**full, "sharing": full["sharing"][:1]}
        with pytest.raises(IntegrityError, match="does not extend") as refused:
            await self.fetch(cut, profile)
        assert refused.value.exit_code == 7
        # A fresh device cannot tell: the cut chain verifies on its own.
        assert (await self.fetch(cut, Profile(tmp_path / "other"))).verified

    async def test_a_device_with_an_unsigned_head_from_before_still_holds_it(self, tmp_path):
        from ecrin_client.audit import HEADS
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        kms = chain(["keys.release", "keys.grant"])
        profile._write(HEADS, {f"kms:file:{FILE}": {"seq": 2, "hash": kms[-1]["hash"]}})
        with pytest.raises(IntegrityError):
            await self.fetch({"sharing": [], "kms": kms[:1]}, profile)
        assert (await self.fetch({"sharing": [], "kms": kms}, profile)).verified

    async def test_another_key_is_refused_once_one_is_pinned(self, tmp_path):
        from ecrin_client.audit import SERVICE_KEYS
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        await self.fetch({"sharing": [], "kms": []}, profile)
        forged = served("kms", chain(["keys.release"]), AuditSigningKey.generate())
        with pytest.raises(IntegrityError, match="not the one this device pinned"):
            await self.fetch({"sharing": [], "kms": forged}, profile)
        assert profile._read(SERVICE_KEYS)["kms"] == b64e(KEYS["kms"].public_key)

    @pytest.mark.parametrize("tamper", ["signature", "key", "seq", "hash", "service",
                                        "unsigned"])
    async def test_a_head_that_does_not_verify_or_match_is_refused(self, tmp_path, tamper):
        from ecrin_client.profile import Profile

        events = chain(["keys.release", "keys.grant"])
        body = served("kms", events)
        if tamper == "signature":
            body["signature"] = b64e(bytes(64))
        elif tamper == "key":  # the right head, verified under a key that did not sign it
            body["audit_key"] = b64e(AuditSigningKey.generate().public_key)
        elif tamper == "unsigned":
            del body["head"], body["signature"]
        else:  # signed by the genuine key, but not the head of what is served
            other = {"seq": 1, "hash": events[0]["hash"], "service": "sharing"}
            head = {**body["head"], tamper: other[tamper]}
            signed = KEYS["kms"].sign(**{k: head[k] for k in ("service", "chain", "seq",
                                                               "hash")})
            body.update(signed.to_json())
        with pytest.raises(IntegrityError):
            await self.fetch({"sharing": [], "kms": body}, Profile(tmp_path))

    async def test_a_broken_chain_is_reported_and_its_head_not_kept(self, tmp_path):
        from ecrin_client.audit import HEADS
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        events = chain(["keys.release", "keys.grant", "scope.rotate"])
        events[1]["action"] = "edited"  # hashes not recomputed: the chain breaks at 2
        trail = await self.fetch({"sharing": [], "kms": events}, profile)
        assert not trail.verified
        assert [c.broken_at for c in trail.chains if c.service == "kms"] == [2]
        assert profile._read(HEADS) is None

    async def test_the_chain_of_each_readable_scope_is_fetched_and_verified(self, tmp_path):
        """A patient who reads the shared scope: the kms's and the records-api's file
        chains and their shared chains, nothing of the clinical scope."""
        from ecrin_client.audit import HEADS
        from ecrin_client.profile import Profile

        profile, paths = Profile(tmp_path), []
        answers = {"sharing": chain(["grant.create"], "sharing"),
                   "kms": chain(["keys.grant"]),
                   "kms:shared": chain(["keys.release"], scope="shared"),
                   "records-api": [],
                   "records-api:shared": chain(["record.read", "record.read"],
                                               "records-api", scope="shared")}
        trail = await self.fetch(answers, profile, scopes={"shared": "append"}, paths=paths)
        assert trail.verified
        assert [(c.service, c.scope, len(c.events)) for c in trail.chains] == [
            ("sharing", None, 1), ("kms", None, 1), ("kms", "shared", 1),
            ("records-api", None, 0), ("records-api", "shared", 2)]
        assert not [p for p in paths if "clinical" in p or "administrative" in p]
        kept = profile._read(HEADS)
        assert kept[f"records-api:file:{FILE}:shared"]["head"]["seq"] == 2
        assert kept[f"kms:file:{FILE}:shared"]["head"]["seq"] == 1
        # Events of another chain served as the shared scope's do not verify.
        moved = {**answers, "kms:shared": chain(["keys.release"])}
        trail = await self.fetch(moved, Profile(tmp_path / "other"), scopes={"shared": "read"})
        assert [(c.scope, c.broken_at) for c in trail.chains if c.service == "kms"] == [
            (None, None), ("shared", 1)]

    async def test_a_scope_chain_this_device_verified_cannot_be_hidden(self, tmp_path):
        from ecrin_client.profile import Profile

        profile = Profile(tmp_path)
        answers = {"sharing": chain(["grant.create"], "sharing"), "kms": [],
                   "kms:shared": chain(["keys.release"], scope="shared")}
        assert (await self.fetch(answers, profile, scopes={"shared": "read"})).verified
        hidden = {k: v for k, v in answers.items() if k != "kms:shared"}
        with pytest.raises(IntegrityError, match=f"file:{FILE}:shared"):
            await self.fetch(hidden, profile, scopes={"shared": "read"})
        # A scope the caller no longer holds is not asked for, so not missed.
        assert (await self.fetch(hidden, profile, scopes={})).verified


class TestAcceptRefusesWhatTheServerAltered:
    """A server that alters an invitation is caught before the invitation is consumed."""

    @staticmethod
    async def accept(tmp_path, found: dict, code_text: str) -> list[tuple[str, str]]:
        from ecrin_client.client import EcrinClient
        from ecrin_client.errors import IntegrityError
        from ecrin_client.profile import Profile, StoredTokens
        from ecrin_client.records import Records
        from ecrin_client.sharing import Sharing

        from ecrin_e2ee import IdentityKeys

        calls: list[tuple[str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append((request.method, request.url.path))
            if request.url.path.startswith("/v1/invitations/lookup/"):
                return httpx.Response(200, json=found)
            return httpx.Response(500)

        profile = Profile(tmp_path)
        profile.save_tokens(StoredTokens(access_token="a", refresh_token="r", session_id="s"))
        identity = IdentityKeys.generate(uuid.uuid4())
        async with EcrinClient("https://ecrin.test", profile,
                               transport=httpx.MockTransport(handler)) as client:
            sharing = Sharing(Records(client, identity))
            with pytest.raises(IntegrityError):
                await sharing.accept(code_text)
        return calls

    @staticmethod
    def invitation(scopes: dict[str, str]):
        from ecrin_e2ee import IdentityKeys, KdfParams, Scope, ScopeKey, create_invitation

        file_id = uuid.uuid4()
        keys = [ScopeKey.generate(file_id, Scope.SHARED)]
        inviter = IdentityKeys.generate(uuid.uuid4())
        code, payload, _ = create_invitation(keys, inviter=inviter,
                                             params=KdfParams.insecure_for_tests())
        found = {"id": str(uuid.uuid4()), "file_id": str(file_id),
                 "inviter_id": str(inviter.account_id), "relationship": "parent", "scopes": scopes,
                 "valid_until": None, "expires_at": "2026-12-12T00:00:00+00:00",
                 "payload": payload.to_json()}
        return code.to_text(), found

    async def test_a_tampered_payload(self, tmp_path):
        code, found = self.invitation({"shared": "append"})
        raw = found["payload"]["ciphertext"]
        found["payload"]["ciphertext"] = ("A" if raw[0] != "A" else "B") + raw[1:]
        calls = await self.accept(tmp_path, found, code)
        assert not any(path.endswith("/redeem") for _, path in calls)

    async def test_terms_that_do_not_match_the_keys(self, tmp_path):
        # The server claims the invitation also grants administrative: the keys say not.
        code, found = self.invitation({"shared": "append", "administrative": "read"})
        calls = await self.accept(tmp_path, found, code)
        assert not any(path.endswith("/redeem") for _, path in calls)
