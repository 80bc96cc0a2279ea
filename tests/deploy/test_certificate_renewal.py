"""A renewed certificate is picked up: every workload of the released overlays that mounts a
certificate (cert-manager's, or CloudNativePG's CA for its database) or its database password
names those Secrets in `secret.reloader.stakater.com/reload`, so that stakater Reloader rolls it
when cert-manager renews one (30 days before expiry) or an operator rotates a password. The
services and Redis read these files at start only: without a rollout a renewed certificate
would wait for the next release, and an expired one would stop every hop.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("deploy")

RELEASED = ("production", "site-data", "site-keys")
RELOAD = "secret.reloader.stakater.com/reload"


def certificate_secrets(docs: list[dict]) -> set[str]:
    return {d["spec"]["secretName"] for d in docs if d["kind"] == "Certificate"}


def rolled_on_change(docs: list[dict], name: str) -> bool:
    """Secrets whose change must roll the workloads that mount them."""
    return (name in certificate_secrets(docs) or name.endswith("-db-ca")
            or name.endswith("-db-app"))


def mounted(workload: dict) -> set[str]:
    return {v["secret"]["secretName"] for v in workload["spec"]["template"]["spec"]["volumes"]
            if "secret" in v}


@pytest.mark.parametrize("overlay", RELEASED)
def test_every_certificate_or_password_a_workload_mounts_rolls_it(documents, overlay):
    docs = documents[overlay]
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    checked = 0
    for workload in workloads:
        needed = {s for s in mounted(workload) if rolled_on_change(docs, s)}
        listed = workload["metadata"].get("annotations", {}).get(RELOAD, "")
        names = {s.strip() for s in listed.split(",") if s.strip()}
        name = workload["metadata"]["name"]
        assert needed <= names, f"{overlay}/{name}: no rollout when {needed - names} changes"
        stale = names - mounted(workload)
        assert not stale, f"{overlay}/{name}: reloads on {stale}, which it does not mount"
        checked += bool(needed)
    assert checked >= (1 if overlay == "site-keys" else 3)


@pytest.mark.parametrize("overlay", RELEASED)
def test_every_certificate_is_picked_up_by_who_uses_it(documents, overlay):
    """Each Certificate's Secret is in a workload's reload list, or used by ingress-nginx
    (which watches the Secrets its Ingresses name and reloads by itself); and cert-manager
    renews it 30 days before its end, which leaves the rollout time."""
    docs = documents[overlay]
    reloaded = {s.strip() for d in docs if d["kind"] in ("Deployment", "StatefulSet")
                for s in d["metadata"].get("annotations", {}).get(RELOAD, "").split(",")}
    by_ingress = {v.split("/")[-1] for d in docs if d["kind"] == "Ingress"
                  for k, v in d["metadata"].get("annotations", {}).items()
                  if k.endswith("proxy-ssl-secret")}
    for cert in (d for d in docs if d["kind"] == "Certificate"):
        secret = cert["spec"]["secretName"]
        assert secret in reloaded | by_ingress, f"{overlay}: nothing picks up {secret} renewed"
        assert cert["spec"].get("renewBefore") == "720h", cert["metadata"]["name"]
