"""At the autoscaler's maximum, mid-rollout, the services cannot open more connections than
their PostgreSQL admits: a PostgreSQL out of slots answers every newcomer with an error.

Per database: (HPA maxReplicas + the rollout's maxSurge) x (pool + overflow) for the
service's pods, + one connection per pod migrating at once (maxSurge: the new pods' init
containers), + a margin for the operator (CloudNativePG's instance manager and monitoring
queries) and an operator's psql, must stay within max_connections minus
superuser_reserved_connections. Pool sizes are read from the rendered ConfigMaps, else the
services' own defaults (ServiceSettings), so a change to either is caught here.
"""

from __future__ import annotations

import pytest

from ecrin_platform.settings import ServiceSettings

pytestmark = pytest.mark.xdist_group("deploy")

SERVICES = {"gateway": ("GATEWAY", "gateway-db"), "records-api": ("RECORDS", "records-db"),
            "kms": ("KMS", "kms-db"), "sharing": ("SHARING", "sharing-db")}
#: CloudNativePG's instance manager, its metrics exporter and a human's psql.
OPERATOR_MARGIN = 10
#: PostgreSQL's default, which the Clusters do not change.
SUPERUSER_RESERVED = 3


def of_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def budget(docs) -> dict[str, tuple[int, int]]:
    """database -> (connections the services may open, connections it admits)."""
    deployments = of_kind(docs, "Deployment")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h
            for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    clusters = of_kind(docs, "Cluster")
    maps = of_kind(docs, "ConfigMap")
    out = {}
    for service, (prefix, db) in SERVICES.items():
        if service not in deployments:
            continue
        data = maps[service]["data"]
        pool = int(data.get(f"ECRIN_{prefix}_DB_POOL_SIZE",
                            ServiceSettings.model_fields["db_pool_size"].default))
        overflow = int(data.get(f"ECRIN_{prefix}_DB_MAX_OVERFLOW",
                                ServiceSettings.model_fields["db_max_overflow"].default))
        surge = int(deployments[service]["spec"]["strategy"]["rollingUpdate"]["maxSurge"])
        pods = hpas[service]["spec"]["maxReplicas"] + surge
        wanted = pods * (pool + overflow) + surge + OPERATOR_MARGIN
        parameters = clusters[db]["spec"].get("postgresql", {}).get("parameters", {})
        admitted = int(parameters.get("max_connections", 100)) - SUPERUSER_RESERVED
        out[db] = (wanted, admitted)
    return out


class TestConnectionBudget:
    @pytest.mark.parametrize("overlay", ["production", "site-data", "site-keys"])
    def test_every_database_admits_its_service_at_full_scale(self, documents, overlay):
        figures = budget(documents[overlay])
        assert figures, "no service with a database in this overlay"
        for db, (wanted, admitted) in figures.items():
            assert wanted <= admitted, f"{db}: {wanted} connections wanted, {admitted} admitted"

    def test_the_check_would_catch_the_defaults_at_postgresqls_default(self, documents):
        """The same overlay with the pools at the services' defaults (10 + 10) and
        PostgreSQL's default max_connections (100) is over budget: the check can fail."""
        import copy

        docs = copy.deepcopy(documents["production"])
        for d in docs:
            if d["kind"] == "ConfigMap":
                d["data"] = {k: v for k, v in (d.get("data") or {}).items()
                             if "_DB_POOL_SIZE" not in k and "_DB_MAX_OVERFLOW" not in k}
            if d["kind"] == "Cluster":
                d["spec"].pop("postgresql", None)
        assert all(wanted > admitted for wanted, admitted in budget(docs).values())
