"""The network edges the NetworkPolicies allow are exactly the architecture's.

An edge inside the namespace (source -> destination:port) is open only when a policy
selecting the source allows it out AND a policy selecting the destination allows it in
(default-deny covers both directions). Peers outside the namespace are named by what
selects them: ``dns``, ``ingress``, ``world``, ``cnpg-operator``.
"""

from __future__ import annotations

import pytest

from tests.deploy.conftest import OVERLAYS

pytestmark = pytest.mark.xdist_group("deploy")

SERVICES = {"gateway": 8000, "records-api": 8001, "kms": 8002, "sharing": 8003}
METRICS_PORT = 9100
DATABASES = {"gateway": "gateway-db", "records-api": "records-db", "kms": "kms-db",
             "sharing": "sharing-db"}


#: The other site's address ranges in overlays/site-data and overlays/site-keys.
SITES = {"192.0.2.0/28": "keys-site", "198.51.100.0/28": "data-site"}


def architecture(overlay: str, workloads: set[str]) -> set[tuple[str, str, str]]:
    edges = {
        ("gateway", "records-api", "8001/TCP"), ("gateway", "kms", "8002/TCP"),
        ("gateway", "sharing", "8003/TCP"),
        ("records-api", "sharing", "8003/TCP"), ("kms", "sharing", "8003/TCP"),
        ("gateway", "redis", "6379/TCP"),
        # access-change notices (sharing/notify.py): the records API only, never the kms
        ("sharing", "records-api", "8001/TCP"),
    }
    edges |= {(svc, db, "5432/TCP") for svc, db in DATABASES.items()}
    if overlay == "site-data":  # the kms is the other data centre's
        edges = {e for e in edges if "kms" not in e[:2] and "kms-db" not in e[:2]}
        edges |= {("gateway", "keys-site", "8002/TCP"), ("keys-site", "sharing", "8003/TCP")}
    if overlay == "site-keys":  # the kms alone, with the data centre's gateway and sharing
        edges = {("data-site", "kms", "8002/TCP"), ("kms", "data-site", "8003/TCP"),
                 ("kms", "kms-db", "5432/TCP")}
    edges |= {(w, "dns", p) for w in workloads for p in ("53/UDP", "53/TCP")}
    if overlay == "kind":
        edges.add(("world", "gateway", "8000/TCP"))  # the NodePort
        return edges
    services = {w for w in workloads if w in SERVICES}
    databases = {w for w in workloads if w in DATABASES.values()}
    if "gateway" in services:
        edges.add(("ingress-nginx", "gateway", "8000/TCP"))
    # Prometheus scrapes each service's metrics listener, and only that port.
    edges |= {("prometheus", svc, f"{METRICS_PORT}/TCP") for svc in services}
    # What CloudNativePG needs to run a database: its operator, replication between
    # the instances of one cluster, the API server and the object store (backups).
    for db in databases:
        for port in ("5432/TCP", "8000/TCP"):
            edges |= {("cnpg-operator", db, port), (db, db, port)}
        edges |= {(db, "world", "443/TCP"), (db, "world", "6443/TCP")}
    return edges


def matches(selector: dict, labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def workloads_of(docs: list[dict]) -> dict[str, dict[str, str]]:
    """name -> labels of its pods, for every workload that runs pods (names are unique
    across the namespaces of one overlay)."""
    pods = {}
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            pods[d["metadata"]["name"]] = d["spec"]["template"]["metadata"]["labels"]
        elif d["kind"] == "Cluster":  # CloudNativePG: inheritedMetadata reaches the pods
            labels = dict(d["spec"]["inheritedMetadata"]["labels"])
            labels["cnpg.io/cluster"] = d["metadata"]["name"]
            pods[d["metadata"]["name"]] = labels
    return pods


def namespaces_of(docs: list[dict]) -> dict[str, str]:
    """workload name -> its namespace."""
    return {d["metadata"]["name"]: d["metadata"]["namespace"] for d in docs
            if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Cluster")}


def external(peer: dict) -> str:
    if "ipBlock" in peer:
        assert not peer["ipBlock"].get("except")
        cidr = peer["ipBlock"]["cidr"]
        assert cidr == "0.0.0.0/0" or cidr in SITES, cidr
        return SITES.get(cidr, "world")
    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    pod = (peer.get("podSelector") or {}).get("matchLabels") or {}
    names = {("kube-system", "kube-dns"): "dns", ("ingress-nginx", "ingress-nginx"):
             "ingress-nginx", ("cnpg-system", "cloudnative-pg"): "cnpg-operator",
             ("monitoring", "prometheus"): "prometheus"}
    key = (namespace, pod.get("k8s-app") or pod.get("app.kubernetes.io/name"))
    assert key in names, f"unexpected peer {peer}"
    return names[key]


def ports(rule: dict) -> list[str]:
    assert rule.get("ports"), f"a rule without ports opens every port: {rule}"
    out = []
    for p in rule["ports"]:
        assert isinstance(p["port"], int), "numeric ports only, so the edges are readable"
        out.append(f"{p['port']}/{p.get('protocol', 'TCP')}")
    return out


def peers(peer: dict, policy_namespace: str, pods: dict[str, dict[str, str]],
          namespaces: dict[str, str]) -> list[str]:
    """The workloads (or the one external name) a policy peer selects. A podSelector alone
    selects in the policy's namespace; with a namespaceSelector naming a namespace of this
    overlay, in that one."""
    if set(peer) == {"podSelector"}:
        namespace = policy_namespace
    elif "namespaceSelector" in peer and "podSelector" in peer and \
            peer["namespaceSelector"]["matchLabels"].get("kubernetes.io/metadata.name") in \
            set(namespaces.values()):
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    else:
        return [external(peer)]
    return [w for w, labels in pods.items()
            if namespaces[w] == namespace and matches(peer["podSelector"], labels)]


def allowed_edges(docs: list[dict]) -> set[tuple[str, str, str]]:
    pods = workloads_of(docs)
    namespaces = namespaces_of(docs)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    # (source, destination-or-external, port) allowed out, and allowed in.
    out: set[tuple[str, str, str]] = set()
    into: set[tuple[str, str, str]] = set()
    for policy in policies:
        spec = policy["spec"]
        ns = policy["metadata"]["namespace"]
        selected = [w for w, labels in pods.items()
                    if namespaces[w] == ns and matches(spec["podSelector"], labels)]
        for rule in spec.get("egress") or []:
            assert rule.get("to"), f"{policy['metadata']['name']}: egress to anywhere"
            for peer in rule["to"]:
                targets = peers(peer, ns, pods, namespaces)
                out |= {(s, t, p) for s in selected for t in targets for p in ports(rule)}
        for rule in spec.get("ingress") or []:
            assert rule.get("from"), f"{policy['metadata']['name']}: ingress from anywhere"
            for peer in rule["from"]:
                sources = peers(peer, ns, pods, namespaces)
                into |= {(s, d, p) for d in selected for s in sources for p in ports(rule)}
    edges = out & into  # both ends must agree inside the overlay
    edges |= {e for e in out if e[1] not in pods}  # to outside: the source's say
    edges |= {e for e in into if e[0] not in pods}  # from outside: the destination's say
    return edges


class TestDefaultDeny:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_every_pod_is_denied_by_default_both_ways(self, documents, overlay):
        denies = [d for d in documents[overlay] if d["kind"] == "NetworkPolicy"
                  and d["spec"]["podSelector"] == {}
                  and set(d["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                  and not d["spec"].get("ingress") and not d["spec"].get("egress")]
        # One per namespace (production has two: ecrin and ecrin-keys).
        namespaces = {d["metadata"]["namespace"] for d in documents[overlay]
                      if d["kind"] not in ("Namespace",)}
        assert sorted((d["metadata"]["namespace"], d["metadata"]["name"]) for d in denies) == \
            sorted((ns, "default-deny") for ns in namespaces)


class TestEdges:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_allowed_edges_are_exactly_the_architecture(self, documents, overlay):
        docs = documents[overlay]
        edges = allowed_edges(docs)
        expected = architecture(overlay, set(workloads_of(docs)))
        assert sorted(edges - expected) == [], "edges the architecture does not have"
        assert sorted(expected - edges) == [], "edges the architecture needs, missing"

    @pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "site-data"])
    def test_kms_and_its_database_are_reached_by_their_one_client(self, documents, overlay):
        edges = allowed_edges(documents[overlay])
        gateway = "data-site" if overlay == "site-keys" else "gateway"
        # (Prometheus reaches the metrics listener only: TestMetricsPort.)
        assert {s for s, d, p in edges if d == "kms" and p != f"{METRICS_PORT}/TCP"} == \
            {gateway}
        assert {s for s, d, _ in edges if d == "kms-db"} - {"kms-db", "cnpg-operator"} == {"kms"}

    @pytest.mark.parametrize("overlay", ["production", "site-keys"])
    def test_nothing_of_the_data_namespace_reaches_the_keys_namespace_but_the_gateway(
            self, documents, overlay):
        docs = documents[overlay]
        namespaces = namespaces_of(docs)
        keys = {w for w, ns in namespaces.items() if ns == "ecrin-keys"}
        assert keys == {"kms", "kms-db"}
        inbound = {s for s, d, p in allowed_edges(docs)
                   if d in keys and s not in keys and p != f"{METRICS_PORT}/TCP"}
        assert inbound == ({"gateway", "cnpg-operator"} if overlay == "production"
                           else {"data-site", "cnpg-operator"})

    def test_the_data_site_has_no_kms_and_reaches_the_keys_site_only_from_the_gateway(
            self, documents):
        docs = documents["site-data"]
        assert not {"kms", "kms-db"} & set(workloads_of(docs))
        edges = allowed_edges(docs)
        assert {(s, p) for s, d, p in edges if d == "keys-site"} == {("gateway", "8002/TCP")}
        assert {(d, p) for s, d, p in edges if s == "keys-site"} == {("sharing", "8003/TCP")}

    def test_the_netns_run_mirrors_the_same_edges(self, documents):
        """deploy/netns/run.sh's EDGES are the service edges of the kind overlay."""
        import re

        from tests.deploy.conftest import ROOT

        script = (ROOT / "deploy" / "netns" / "run.sh").read_text()
        block = script.split("EDGES=(", 1)[1].split(")", 1)[0]
        netns = {tuple(m.split()) for m in re.findall(r'"([^"]+)"', block)}
        netns = {(s.replace("client", "world"), d, f"{p}/TCP") for s, d, p in netns}
        kind = {e for e in allowed_edges(documents["kind"])
                if e[1] not in ("dns", "redis")}
        assert netns == kind


class TestMetricsPort:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_metrics_listener_is_apart_and_never_in_a_service(self, documents, overlay):
        docs = documents[overlay]
        for name in set(SERVICES) & set(workloads_of(docs)):
            (deployment,) = [d for d in docs if d["kind"] == "Deployment"
                             and d["metadata"]["name"] == name]
            pod = deployment["spec"]["template"]
            (container,) = pod["spec"]["containers"]
            assert container["args"][-2:] == ["--metrics-port", str(METRICS_PORT)]
            assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
            # (site overlays add a LoadBalancer <name>-remote: the same port, never 9100)
            for service in [d for d in docs if d["kind"] == "Service"
                            and d["metadata"]["name"] in (name, f"{name}-remote")]:
                assert [p["port"] for p in service["spec"]["ports"]] == [SERVICES[name]]
        if overlay != "kind":
            edges = allowed_edges(docs)
            assert {s for s, _, p in edges if p == f"{METRICS_PORT}/TCP"} == {"prometheus"}
