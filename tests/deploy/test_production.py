"""The production overlay's CloudNativePG clusters, Ingress and autoscalers (no CRD schema
is bundled with kubernetes-validate, so their shape is checked here)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("deploy")


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


class TestCloudNativePG:
    def test_one_cluster_per_service_database_three_instances_backed_up(self, documents):
        clusters = of_kind(documents["production"], "Cluster")
        assert set(clusters) == {"gateway-db", "records-db", "kms-db", "sharing-db"}
        for name, c in clusters.items():
            spec = c["spec"]
            assert spec["instances"] == 3, name
            assert spec["enableSuperuserAccess"] is False, name
            store = spec["backup"]["barmanObjectStore"]
            assert store["destinationPath"].endswith(f"/{name}"), name
            assert set(store["s3Credentials"]["accessKeyId"]) == {"name", "key"}, name
            assert store["wal"]["encryption"] and store["data"]["encryption"], name
        backups = of_kind(documents["production"], "ScheduledBackup")
        assert {b["spec"]["cluster"]["name"] for b in backups.values()} == set(clusters)

    def test_services_use_the_operator_made_secret_and_rw_service(self, documents):
        docs = documents["production"]
        maps = of_kind(docs, "ConfigMap")
        for svc, db in [("gateway", "gateway"), ("records-api", "records"), ("kms", "kms"),
                        ("sharing", "sharing")]:
            assert maps[svc]["data"]["DB_HOST"] == f"{db}-db-rw"
            env = of_kind(docs, "Deployment")[svc]["spec"]["template"]["spec"]["containers"][0]
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env["env"] if "valueFrom" in e}
            assert refs == {f"{db}-db-app"}


class TestEdge:
    def test_tls_ingress_for_the_gateway_only(self, documents):
        ingresses = list(of_kind(documents["production"], "Ingress").values())
        assert len(ingresses) == 1
        spec = ingresses[0]["spec"]
        assert spec["tls"][0]["secretName"]
        backends = {p["backend"]["service"]["name"] for r in spec["rules"]
                    for p in r["http"]["paths"]}
        assert backends == {"gateway"}

    def test_stateless_services_autoscale(self, documents):
        hpas = of_kind(documents["production"], "HorizontalPodAutoscaler")
        assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {
            "gateway", "records-api", "kms", "sharing"}
        assert all(h["spec"]["minReplicas"] >= 2 for h in hpas.values())
