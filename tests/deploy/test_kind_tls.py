"""kind has TLS on every hop too, with production's own components (components/internal-tls,
components/database-tls) and certificates from cert-manager, signed by CAs of kind's own.

Read on the rendered kind overlay: every hop a service's settings name (gateway -> records-api,
kms, sharing; records-api, kms -> sharing; sharing -> records-api) is https to a Service whose
pods present a certificate of the internal CA for that very host name, and require one from
the caller; every service reaches its PostgreSQL with verify-full against that database's own
CA, and that PostgreSQL serves TLS only; the gateway reaches Redis over TLS with a password.
Each check is a function that lists what is wrong, and a test breaks the rendering on purpose
to show that it would fail.
"""

from __future__ import annotations

import copy
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.deploy.conftest import ROOT
from tests.deploy.test_operator_schemas import CERTIFICATE_FIELDS, ENUMS, KEY_USAGES, unknown_fields

pytestmark = pytest.mark.xdist_group("deploy")

SERVICES = {"gateway": "GATEWAY", "records-api": "RECORDS", "kms": "KMS", "sharing": "SHARING"}
DATABASE_OF = {"gateway": "gateway-db", "records-api": "records-db", "kms": "kms-db",
               "sharing": "sharing-db"}
#: Who calls whom (tests/deploy/test_network_policies.py has the same edges).
HOPS = {("gateway", "records-api"), ("gateway", "kms"), ("gateway", "sharing"),
        ("records-api", "sharing"), ("kms", "sharing"), ("sharing", "records-api")}
ISSUER_FIELDS = {"spec": {"selfSigned", "ca", "acme", "vault", "venafi"},
                 "spec.ca": {"secretName", "crlDistributionPoints", "ocspServers",
                             "issuingCertificateURLs"}}


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def config(docs, service):
    return of_kind(docs, "ConfigMap")[service]["data"]


def pod(docs, kind, name):
    return of_kind(docs, kind)[name]["spec"]["template"]["spec"]


def mounted_file(spec: dict, container: dict, path: str) -> tuple[str, str] | None:
    """(Secret or ConfigMap name, key) that ``path`` is in this container, or None."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = volumes[mount["name"]]
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            return None
        name = source.get("secretName") or source.get("name")
        key = path[len(prefix):]
        items = {i["path"]: i["key"] for i in source.get("items", [])}
        if items and key not in items:
            return None
        return name, items.get(key, key)
    return None


def certificate_of_secret(docs, secret: str) -> dict | None:
    for cert in of_kind(docs, "Certificate").values():
        if cert["spec"]["secretName"] == secret:
            return cert
    return None


def ca_secret_of_issuer(docs, issuer_name: str) -> str | None:
    issuer = of_kind(docs, "Issuer").get(issuer_name)
    return (issuer or {}).get("spec", {}).get("ca", {}).get("secretName")


def service_behind(docs, host: str) -> str | None:
    """The Deployment or StatefulSet a Service host name leads to."""
    service = of_kind(docs, "Service").get(host.split(".")[0])
    if service is None:
        return None
    selector = service["spec"]["selector"]
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            labels = d["spec"]["template"]["metadata"]["labels"]
            if all(labels.get(k) == v for k, v in selector.items()):
                return d["metadata"]["name"]
    return None


def serving_certificate(docs, workload: str) -> dict | None:
    """The Certificate whose Secret a service mounts at its TLS_CERT_FILE."""
    prefix = SERVICES[workload]
    spec = pod(docs, "Deployment", workload)
    found = mounted_file(spec, spec["containers"][0],
                         config(docs, workload).get(f"ECRIN_{prefix}_TLS_CERT_FILE", ""))
    return certificate_of_secret(docs, found[0]) if found else None


def hop_problems(docs) -> list[str]:
    """What keeps a service-to-service hop from being mutual TLS, verified end to end."""
    problems = []
    hops = set()
    for caller, prefix in SERVICES.items():
        data = config(docs, caller)
        spec = pod(docs, "Deployment", caller)
        main = spec["containers"][0]
        for kind_ in ("CERT", "KEY", "CA"):
            path = data.get(f"ECRIN_{prefix}_TLS_{kind_}_FILE")
            if path is None or mounted_file(spec, main, path) is None:
                problems.append(f"{caller}: TLS_{kind_}_FILE unset or not a mounted file")
        mine = serving_certificate(docs, caller)
        if mine is None:
            problems.append(f"{caller}: its certificate is no Certificate of the overlay")
            continue
        if caller != "gateway" and data.get(f"ECRIN_{prefix}_TLS_REQUIRE_CLIENT_CERT",
                                            "true") != "true":
            problems.append(f"{caller}: serves without requiring a client certificate")
        for key, url in data.items():
            if not key.endswith("_URL") or "DATABASE" in key or "REDIS" in key:
                continue
            parts = urlsplit(url)
            callee = service_behind(docs, parts.hostname or "")
            hops.add((caller, callee))
            if parts.scheme != "https":
                problems.append(f"{caller} -> {callee}: {key} is {parts.scheme}")
                continue
            theirs = serving_certificate(docs, callee) if callee in SERVICES else None
            if theirs is None:
                problems.append(f"{caller}: {key} leads to no service with a certificate")
                continue
            if parts.hostname not in theirs["spec"]["dnsNames"]:
                problems.append(f"{caller} -> {callee}: {parts.hostname} not in its certificate")
            if "server auth" not in theirs["spec"]["usages"] or \
                    "client auth" not in mine["spec"]["usages"]:
                problems.append(f"{caller} -> {callee}: usages")
            if theirs["spec"]["issuerRef"] != mine["spec"]["issuerRef"]:
                problems.append(f"{caller} -> {callee}: certificates of two issuers")
            # Both trust that issuer's CA: TLS_CA_FILE is the ca.crt of the same Secret.
            for who in (caller, callee):
                ca = config(docs, who)[f"ECRIN_{SERVICES[who]}_TLS_CA_FILE"]
                if not ca.endswith("/ca.crt"):
                    problems.append(f"{who}: TLS_CA_FILE is not its Secret's ca.crt")
    if hops != HOPS:
        problems.append(f"hops {sorted(hops, key=str)} are not {sorted(HOPS)}")
    return problems


def database_problems(docs) -> list[str]:
    """What keeps a service's PostgreSQL connection from being verify-full against a CA that
    signed the server's certificate, on a server that admits TLS only."""
    problems = []
    hba = {}
    for service, prefix in SERVICES.items():
        data = config(docs, service)
        url = urlsplit(data[f"ECRIN_{prefix}_DATABASE_URL"])
        if parse_qs(url.query).get("ssl") != ["verify-full"]:
            problems.append(f"{service}: database URL without ssl=verify-full")
        db = service_behind(docs, url.hostname or "")
        if db != DATABASE_OF[service]:
            problems.append(f"{service}: {url.hostname} is not its database's Service")
            continue
        spec = pod(docs, "Deployment", service)
        trusted = {mounted_file(spec, c, data.get("PGSSLROOTCERT", ""))
                   for c in spec["containers"][:1] + spec["initContainers"]}
        if len(trusted) != 1 or None in trusted:
            problems.append(f"{service}: PGSSLROOTCERT is not mounted in the service and its "
                            "migration alike")
            continue
        ((ca_secret, ca_key),) = trusted
        ca = certificate_of_secret(docs, ca_secret)
        if ca is None or not ca["spec"].get("isCA") or ca_key != "ca.crt":
            problems.append(f"{service}: PGSSLROOTCERT is not a CA's ca.crt")
            continue
        server = pod(docs, "StatefulSet", db)
        (postgres,) = server["containers"]
        args = postgres.get("args", [])
        settings = dict(a.split("=", 1) for a in args if "=" in a)
        if settings.get("ssl") != "on":
            problems.append(f"{db}: ssl is not on")
        cert_file = mounted_file(server, postgres, settings.get("ssl_cert_file", ""))
        key_file = mounted_file(server, postgres, settings.get("ssl_key_file", ""))
        if cert_file is None or key_file is None or cert_file[0] != key_file[0]:
            problems.append(f"{db}: its certificate and key are not one mounted Secret")
            continue
        cert = certificate_of_secret(docs, cert_file[0])
        if cert is None:
            problems.append(f"{db}: serves no Certificate of the overlay")
            continue
        if url.hostname not in cert["spec"]["dnsNames"]:
            problems.append(f"{db}: {url.hostname} not in its certificate")
        if ca_secret_of_issuer(docs, cert["spec"]["issuerRef"]["name"]) != ca_secret:
            problems.append(f"{db}: its certificate is not signed by the CA {service} trusts")
        hba_file = mounted_file(server, postgres, settings.get("hba_file", ""))
        if hba_file is None:
            problems.append(f"{db}: no hba_file of the overlay")
            continue
        hba[db] = of_kind(docs, "ConfigMap")[hba_file[0]]["data"][hba_file[1]]
    for db, text in hba.items():
        lines = [line.split() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines or any(f[0] not in ("local", "hostssl") for f in lines):
            problems.append(f"{db}: pg_hba admits TCP without TLS")
        if any(f[-1] in ("trust", "password", "md5") for f in lines):
            problems.append(f"{db}: pg_hba admits a weaker method than scram-sha-256")
    return problems


@pytest.fixture
def kind(documents):
    return documents["kind"]


class TestServiceHops:
    def test_every_hop_is_mutual_tls_to_the_host_in_the_certificate(self, kind):
        assert hop_problems(kind) == []

    def test_a_plain_hop_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        config(docs, "kms")["ECRIN_KMS_SHARING_URL"] = "http://sharing:8003"
        assert hop_problems(docs) == ["kms -> sharing: ECRIN_KMS_SHARING_URL is http"]

    def test_a_host_missing_from_the_certificate_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        config(docs, "gateway")["ECRIN_GATEWAY_KMS_URL"] = "https://kms.ecrin.svc:8002"
        cert = certificate_of_secret(docs, "kms-internal-tls")
        cert["spec"]["dnsNames"].remove("kms.ecrin.svc")
        assert hop_problems(docs) == ["gateway -> kms: kms.ecrin.svc not in its certificate"]

    def test_a_service_that_stops_asking_for_client_certificates_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        config(docs, "kms")["ECRIN_KMS_TLS_REQUIRE_CLIENT_CERT"] = "false"
        assert hop_problems(docs) == ["kms: serves without requiring a client certificate"]

    def test_probes_present_the_pods_certificate(self, kind):
        for service, prefix in SERVICES.items():
            spec = pod(kind, "Deployment", service)
            main = spec["containers"][0]
            data = config(kind, service)
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                command = main[probe]["exec"]["command"]
                assert command[3].startswith("https://localhost:"), (service, probe)
                for flag, kind_ in (("--ca", "CA"), ("--cert", "CERT"), ("--key", "KEY")):
                    assert command[command.index(flag) + 1] == \
                        data[f"ECRIN_{prefix}_TLS_{kind_}_FILE"], (service, probe)
            assert "localhost" in serving_certificate(kind, service)["spec"]["dnsNames"]

    def test_the_laptop_reaches_the_gateway_over_tls(self, kind):
        """The NodePort is the laptop's way in: TLS for localhost and 127.0.0.1, with no
        client certificate asked (the browser and the CLI have none)."""
        data = config(kind, "gateway")
        assert data["ECRIN_GATEWAY_TLS_REQUIRE_CLIENT_CERT"] == "false"
        spec = serving_certificate(kind, "gateway")["spec"]
        assert "localhost" in spec["dnsNames"] and spec["ipAddresses"] == ["127.0.0.1"]
        (port,) = of_kind(kind, "Service")["gateway"]["spec"]["ports"]
        assert port["nodePort"] == 30080


class TestDatabases:
    def test_verify_full_against_each_databases_own_ca_and_tls_only(self, kind):
        assert database_problems(kind) == []

    def test_a_connection_without_verify_full_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        data = config(docs, "records-api")
        data["ECRIN_RECORDS_DATABASE_URL"] = data["ECRIN_RECORDS_DATABASE_URL"].replace(
            "verify-full", "require")
        assert database_problems(docs) == ["records-api: database URL without ssl=verify-full"]

    def test_a_server_accepting_plain_tcp_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        hba = of_kind(docs, "ConfigMap")["postgresql-hba"]["data"]
        hba["pg_hba.conf"] += "host all all all scram-sha-256\n"
        assert set(database_problems(docs)) == {
            f"{db}: pg_hba admits TCP without TLS" for db in DATABASE_OF.values()}

    def test_a_server_certificate_of_another_ca_is_caught(self, kind):
        docs = copy.deepcopy(kind)
        certificate_of_secret(docs, "kms-db-server")["spec"]["issuerRef"]["name"] = \
            "ecrin-internal-ca"
        assert database_problems(docs) == [
            "kms-db: its certificate is not signed by the CA kms trusts"]


class TestRedis:
    def test_tls_and_a_password(self, kind):
        data = config(kind, "gateway")
        url = urlsplit(data["ECRIN_GATEWAY_REDIS_URL"])
        assert url.scheme == "rediss" and service_behind(kind, url.hostname) == "redis"
        spec = pod(kind, "Deployment", "gateway")
        (ca,) = parse_qs(url.query)["ssl_ca_certs"]
        assert mounted_file(spec, spec["containers"][0], ca) == ("gateway-internal-tls",
                                                                 "ca.crt")
        assert mounted_file(spec, spec["containers"][0],
                            data["ECRIN_GATEWAY_REDIS_PASSWORD_FILE"]) == ("redis-auth",
                                                                           "password")
        redis = pod(kind, "Deployment", "redis")
        args = redis["containers"][0]["args"]
        assert args[args.index("--port") + 1] == "0"
        assert args[args.index("--tls-port") + 1] == "6379"
        secret, _ = mounted_file(redis, redis["containers"][0],
                                 args[args.index("--tls-cert-file") + 1])
        cert = certificate_of_secret(kind, secret)
        assert url.hostname in cert["spec"]["dnsNames"]
        assert cert["spec"]["issuerRef"] == serving_certificate(kind, "gateway")["spec"][
            "issuerRef"]
        assert mounted_file(redis, redis["containers"][0], args[1]) == ("redis-auth",
                                                                        "redis.conf")


class TestCertManager:
    def test_every_issuer_chain_ends_in_a_self_signed_ca_of_the_overlay(self, kind):
        issuers = of_kind(kind, "Issuer")
        cas = {c["spec"]["secretName"]: c for c in of_kind(kind, "Certificate").values()
               if c["spec"].get("isCA")}
        self_signed = {n for n, i in issuers.items() if "selfSigned" in i["spec"]}
        assert self_signed == {"ecrin-selfsigned"}
        for name, cert in of_kind(kind, "Certificate").items():
            ref = cert["spec"]["issuerRef"]
            assert ref["kind"] == "Issuer" and ref["group"] == "cert-manager.io", name
            if cert["spec"].get("isCA"):
                # A CA keeps its key when renewed: what it signed still verifies.
                assert ref["name"] in self_signed, name
                assert cert["spec"]["privateKey"]["rotationPolicy"] == "Never", name
                continue
            ca_secret = issuers[ref["name"]]["spec"]["ca"]["secretName"]
            assert ca_secret in cas, name
            assert cas[ca_secret]["spec"]["issuerRef"]["name"] in self_signed, name

    def test_every_database_has_a_ca_of_its_own(self, kind):
        """As CloudNativePG does: a database's CA signs that database's server only, so
        trusting it (PGSSLROOTCERT) trusts no other server nor any service."""
        signers = {}
        for cert in of_kind(kind, "Certificate").values():
            if not cert["spec"].get("isCA"):
                issuer = cert["spec"]["issuerRef"]["name"]
                signers.setdefault(ca_secret_of_issuer(kind, issuer), []).append(
                    cert["spec"]["secretName"])
        for db in DATABASE_OF.values():
            assert signers[f"{db}-ca"] == [f"{db}-server"]
        assert sorted(signers["ecrin-internal-ca"]) == sorted(
            [f"{s}-internal-tls" for s in SERVICES] + ["redis-tls"])

    def test_fields_are_the_crds(self, kind):
        """The same check as test_operator_schemas.py (cert-manager 1.16), on kind's objects."""
        for name, cert in of_kind(kind, "Certificate").items():
            assert unknown_fields(cert, CERTIFICATE_FIELDS) == [], name
            assert set(cert["spec"]["usages"]) <= KEY_USAGES, name
            for path, allowed in ENUMS["Certificate"].items():
                node = cert
                for part in path.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                assert node is None or node in allowed, (name, path)
            assert cert["spec"]["renewBefore"] == "720h", name
        for name, issuer in of_kind(kind, "Issuer").items():
            assert issuer["apiVersion"] == "cert-manager.io/v1"
            assert unknown_fields(issuer, ISSUER_FIELDS) == [], name
            assert len(issuer["spec"]) == 1, name


class TestSameComponentsAsProduction:
    def test_kind_and_production_share_the_tls_settings(self, documents, kind):
        """The components are reused, not copied: the TLS settings, probes and certificate
        mounts of each service are production's, the gateway's NodePort setting aside."""
        production = documents["production"]
        for service in SERVICES:
            keys = [k for k in config(production, service)
                    if "_TLS_" in k or k == "PGSSLROOTCERT" or "DATABASE_URL" in k]
            assert keys, service
            for key in keys:
                assert config(kind, service)[key] == config(production, service)[key], key
            ours, theirs = (pod(d, "Deployment", service) for d in (kind, production))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert ours["containers"][0][probe] == theirs["containers"][0][probe]
            volumes = [{v["name"]: v for v in p["volumes"]} for p in (ours, theirs)]
            for name in ("tls", "db-ca"):
                assert volumes[0][name] == volumes[1][name], (service, name)

    def test_the_overlay_uses_the_components(self):
        text = (ROOT / "deploy" / "k8s" / "overlays" / "kind" / "kustomization.yaml").read_text()
        for component in ("redis", "internal-tls", "database-tls"):
            assert f"  - ../../components/{component}\n" in text
        production = (ROOT / "deploy" / "k8s" / "components" / "production"
                      / "kustomization.yaml").read_text()
        assert "  - ../internal-tls\n" in production and "  - ../database-tls\n" in production


class TestMakeDeploy:
    def test_cert_manager_is_pinned_installed_and_waited_for_first(self):
        makefile = (ROOT / "Makefile").read_text()
        (pin,) = re.findall(r"^CERT_MANAGER_VERSION := (v\d+\.\d+\.\d+)$", makefile, re.M)
        # The CRDs the objects are checked against (test_operator_schemas.py): 1.16.
        assert pin.startswith("v1.16.")
        script = (ROOT / "deploy" / "kind" / "deploy.sh").read_text()
        assert f'CERT_MANAGER_VERSION="${{CERT_MANAGER_VERSION:-{pin}}}"' in script
        install = script.index("releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml")
        wait = script.index("kubectl -n cert-manager wait --for=condition=Available")
        webhook = script.index("--dry-run=server")
        overlay = script.index("kubectl apply -k deploy/k8s/overlays/kind")
        certificates = script.index("wait --for=condition=Ready certificate --all")
        assert install < wait < webhook < overlay < certificates
        assert "CERT_MANAGER_VERSION=$(CERT_MANAGER_VERSION) sh deploy/kind/deploy.sh" in makefile
