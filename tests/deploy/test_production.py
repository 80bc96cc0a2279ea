"""The production overlays keep the promise: the keys on another site than the data, TLS on
every hop, secrets as files, rollouts that finish what is in flight, images by digest.

Overlays: ``production`` (one cluster, the keys in their own namespace and nodes),
``site-data`` and ``site-keys`` (two clusters, two data centres)."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.conftest import release_module

pytestmark = pytest.mark.xdist_group("deploy")

RELEASED = ("production", "site-data", "site-keys")
SERVICES = {"gateway": ("GATEWAY", 8000), "records-api": ("RECORDS", 8001),
            "kms": ("KMS", 8002), "sharing": ("SHARING", 8003)}
DATABASE_OF = {"gateway": "gateway-db", "records-api": "records-db", "kms": "kms-db",
               "sharing": "sharing-db"}
KEYS_NODES = {"key": "ecrin.health/site", "operator": "Equal", "value": "keys",
              "effect": "NoSchedule"}


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def services_in(docs):
    return [name for name in SERVICES if name in of_kind(docs, "Deployment")]


def config(docs, service):
    return of_kind(docs, "ConfigMap")[service]["data"]


def pod(docs, name):
    return of_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]


class TestKeysOnAnotherSite:
    def test_kms_on_the_keys_nodes_only(self, documents):
        for overlay in ("production", "site-keys"):
            spec = pod(documents[overlay], "kms")
            assert KEYS_NODES in spec["tolerations"]
            (term,) = spec["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            assert term["matchExpressions"] == [
                {"key": "ecrin.health/site", "operator": "In", "values": ["keys"]}]
            cluster = of_kind(documents[overlay], "Cluster")["kms-db"]["spec"]["affinity"]
            assert cluster["nodeSelector"] == {"ecrin.health/site": "keys"}
            assert KEYS_NODES in cluster["tolerations"]

    @pytest.mark.parametrize("overlay", ["production", "site-data"])
    def test_nothing_of_the_data_site_tolerates_the_keys_nodes(self, documents, overlay):
        docs = documents[overlay]
        for name, deployment in of_kind(docs, "Deployment").items():
            if deployment["metadata"]["namespace"] == "ecrin":
                assert not deployment["spec"]["template"]["spec"].get("tolerations"), name
        for name, cluster in of_kind(docs, "Cluster").items():
            if cluster["metadata"]["namespace"] == "ecrin":
                assert not cluster["spec"]["affinity"].get("tolerations"), name

    def test_the_keys_back_up_to_their_own_store_with_their_own_credentials(self, documents):
        clusters = of_kind(documents["production"], "Cluster")
        stores = {n: c["spec"]["backup"]["barmanObjectStore"] for n, c in clusters.items()}
        bucket = {n: s["destinationPath"].split("/")[2] for n, s in stores.items()}
        credentials = {n: {s["s3Credentials"][k]["name"] for k in
                           ("accessKeyId", "secretAccessKey")} for n, s in stores.items()}
        for name in ("gateway-db", "records-db", "sharing-db"):
            assert bucket[name] != bucket["kms-db"], name
            assert stores[name]["endpointURL"] != stores["kms-db"]["endpointURL"], name
            assert not credentials[name] & credentials["kms-db"], name
        assert clusters["kms-db"]["metadata"]["namespace"] == "ecrin-keys"

    def test_site_data_reaches_the_kms_over_tls_at_the_other_site(self, documents):
        docs = documents["site-data"]
        assert "kms" not in of_kind(docs, "Deployment")
        assert "kms-db" not in of_kind(docs, "Cluster")
        assert config(docs, "gateway")["ECRIN_GATEWAY_KMS_URL"].startswith("https://kms.keys.")

    def test_site_keys_reaches_sharing_over_tls_at_the_other_site(self, documents):
        docs = documents["site-keys"]
        assert set(of_kind(docs, "Deployment")) == {"kms"}
        assert config(docs, "kms")["ECRIN_KMS_SHARING_URL"].startswith("https://sharing.data.")
        (remote,) = [s for s in of_kind(docs, "Service").values()
                     if s["spec"]["type"] == "LoadBalancer"]
        assert remote["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/28"]
        assert remote["spec"]["externalTrafficPolicy"] == "Local"


class TestTlsEverywhere:
    @pytest.mark.parametrize("overlay", RELEASED)
    def test_services_serve_and_call_over_mutual_tls(self, documents, overlay):
        docs = documents[overlay]
        certificates = {c["spec"]["secretName"]: c for c in of_kind(docs, "Certificate").values()}
        for name in services_in(docs):
            prefix, _ = SERVICES[name]
            data = config(docs, name)
            assert data[f"ECRIN_{prefix}_TLS_CERT_FILE"] == "/etc/ecrin/tls/tls.crt"
            assert data[f"ECRIN_{prefix}_TLS_KEY_FILE"] == "/etc/ecrin/tls/tls.key"
            assert data[f"ECRIN_{prefix}_TLS_CA_FILE"] == "/etc/ecrin/tls/ca.crt"
            for key, value in data.items():
                if key.endswith("_URL") and "DATABASE" not in key and "REDIS" not in key:
                    assert value.startswith("https://"), (name, key, value)
            volumes = {v["name"]: v for v in pod(docs, name)["volumes"]}
            secret = volumes["tls"]["secret"]["secretName"]
            cert = certificates[secret]
            assert cert["spec"]["issuerRef"]["name"] == "ecrin-internal-ca"
            assert {"server auth", "client auth"} <= set(cert["spec"]["usages"])
            namespace = of_kind(docs, "Deployment")[name]["metadata"]["namespace"]
            assert f"{name}.{namespace}.svc" in cert["spec"]["dnsNames"]

    @pytest.mark.parametrize("overlay", RELEASED)
    def test_postgresql_verify_full_against_the_clusters_ca(self, documents, overlay):
        docs = documents[overlay]
        for name in services_in(docs):
            prefix, _ = SERVICES[name]
            data = config(docs, name)
            db = DATABASE_OF[name]
            role = db.removesuffix("-db")
            # The role only: the password is read from the mounted file.
            assert data[f"ECRIN_{prefix}_DATABASE_URL"] == \
                f"postgresql+asyncpg://{role}@{db}-rw:5432/{role}?ssl=verify-full"
            assert data["PGSSLROOTCERT"] == "/etc/ecrin/db-ca/ca.crt"
            volumes = {v["name"]: v for v in pod(docs, name)["volumes"]}
            assert volumes["db-ca"]["secret"]["secretName"] == f"{db}-ca"
            assert volumes["db-credentials"]["secret"]["secretName"] == f"{db}-app"
            assert data[f"ECRIN_{prefix}_DATABASE_PASSWORD_FILE"] == "/etc/ecrin/db/password"

    @pytest.mark.parametrize("overlay", ["production", "site-data"])
    def test_redis_with_a_password_and_tls_only(self, documents, overlay):
        docs = documents[overlay]
        gateway = config(docs, "gateway")
        assert gateway["ECRIN_GATEWAY_REDIS_URL"].startswith("rediss://redis:6379/")
        assert gateway["ECRIN_GATEWAY_REDIS_PASSWORD_FILE"] == "/etc/ecrin/redis/password"
        args = pod(docs, "redis")["containers"][0]["args"]
        assert args[1] == "/etc/redis/auth/redis.conf"  # requirepass, from the Secret
        assert args[args.index("--port") + 1] == "0"
        assert args[args.index("--tls-port") + 1] == "6379"

    @pytest.mark.parametrize("overlay", ["production", "site-data"])
    def test_the_ingress_hop_is_mutual_tls_too(self, documents, overlay):
        (ingress,) = of_kind(documents[overlay], "Ingress").values()
        notes = ingress["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
        assert notes["nginx.ingress.kubernetes.io/proxy-ssl-verify"] == "on"
        assert notes["nginx.ingress.kubernetes.io/proxy-ssl-secret"] == \
            "ecrin/gateway-ingress-client-tls"


class TestSecretsAsFiles:
    @pytest.mark.parametrize("overlay", ["kind", *RELEASED])
    def test_no_secret_reaches_an_environment_variable(self, documents, overlay):
        for name, deployment in of_kind(documents[overlay], "Deployment").items():
            spec = deployment["spec"]["template"]["spec"]
            for c in spec["containers"] + spec.get("initContainers", []):
                assert not any("secretKeyRef" in (e.get("valueFrom") or {})
                               for e in c.get("env", [])), (name, c["name"])
                assert not any("secretRef" in e for e in c.get("envFrom", [])), name
            assert "checkov.io/skip1" not in (deployment["metadata"].get("annotations") or {})


class TestRollouts:
    @pytest.mark.parametrize("overlay", RELEASED)
    def test_replicas_are_left_to_the_autoscaler(self, documents, overlay):
        docs = documents[overlay]
        hpas = {h["spec"]["scaleTargetRef"]["name"]: h
                for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
        for name in services_in(docs):
            assert "replicas" not in of_kind(docs, "Deployment")[name]["spec"], name
            assert hpas[name]["spec"]["minReplicas"] >= 2

    @pytest.mark.parametrize("overlay", ["kind", *RELEASED])
    def test_in_flight_requests_finish_before_the_pod_goes(self, documents, overlay):
        docs = documents[overlay]
        for name in services_in(docs):
            spec = pod(docs, name)
            main = spec["containers"][0]
            assert main["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
            grace = spec["terminationGracePeriodSeconds"]
            # An upload of 200 MiB at 5 Mbit/s: 320 s, through the gateway to records-api.
            assert grace >= (330 if name in ("gateway", "records-api") else 30), name
            strategy = of_kind(docs, "Deployment")[name]["spec"]["strategy"]["rollingUpdate"]
            assert strategy["maxUnavailable"] == 0

    @pytest.mark.parametrize("overlay", RELEASED)
    def test_spread_over_zones_and_nodes(self, documents, overlay):
        docs = documents[overlay]
        for name in services_in(docs):
            spread = {c["topologyKey"]: c for c in pod(docs, name)["topologySpreadConstraints"]}
            assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
            assert spread["topology.kubernetes.io/zone"]["maxSkew"] == 1
            for c in spread.values():
                assert c["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}

    @pytest.mark.parametrize("overlay", RELEASED)
    def test_a_disruption_budget_per_service(self, documents, overlay):
        docs = documents[overlay]
        pdbs = {p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: p
                for p in of_kind(docs, "PodDisruptionBudget").values()}
        for name in services_in(docs):
            assert pdbs[name]["spec"]["maxUnavailable"] == 1


class TestReleaseManifests:
    @pytest.mark.parametrize("overlay", RELEASED)
    def test_every_image_is_pinned_by_digest(self, released, overlay):
        docs = [d for d in yaml.safe_load_all(released[overlay].read_text()) if d]
        release = release_module()
        images = [holder[key] for d in docs for holder, key in release._image_slots(d)]
        assert images
        for image in images:
            assert release.DIGEST.match(image.rsplit("@", 1)[1]), image

    def test_a_missing_digest_writes_nothing(self, tmp_path):
        release = release_module()
        digests = tmp_path / "digests.txt"
        digests.write_text("registry.example.org/ecrin/kms sha256:" + "0" * 64 + "\n")
        out = tmp_path / "out"
        assert release.main(["--digests", str(digests), "--out", str(out), "site-keys"]) == 1
        assert not out.exists()

    def test_a_complete_digest_file_writes_the_overlay(self, tmp_path):
        release = release_module()
        digests = tmp_path / "digests.txt"
        digests.write_text("registry.example.org/ecrin/kms sha256:" + "a" * 64 + "\n"
                           "ghcr.io/cloudnative-pg/postgresql sha256:" + "b" * 64 + "\n")
        out = tmp_path / "out"
        assert release.main(["--digests", str(digests), "--out", str(out), "site-keys"]) == 0
        text = (out / "site-keys.yaml").read_text()
        assert "registry.example.org/ecrin/kms:0.1.0@sha256:" + "a" * 64 in text
        assert "ghcr.io/cloudnative-pg/postgresql:16.4@sha256:" + "b" * 64 in text

    def test_a_malformed_digest_is_refused(self):
        with pytest.raises(ValueError, match="line 1"):
            release_module().read_digests("redis sha256:abc\n")


class TestEdge:
    def test_tls_ingress_for_the_gateway_only(self, documents):
        ingresses = list(of_kind(documents["production"], "Ingress").values())
        assert len(ingresses) == 1
        spec = ingresses[0]["spec"]
        assert spec["tls"][0]["secretName"]
        backends = {p["backend"]["service"]["name"] for r in spec["rules"]
                    for p in r["http"]["paths"]}
        assert backends == {"gateway"}
