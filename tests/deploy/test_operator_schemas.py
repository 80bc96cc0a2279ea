"""The operators' objects (CloudNativePG Cluster and ScheduledBackup, cert-manager
Certificate) hold to their CRDs, for the operator versions the deployment pins.

No package registry reachable here ships these CRDs (PyPI has no CloudNativePG schema
package; cloudcoil-models-cert-manager needs Python 3.14; the Go module proxy is not
reachable from this machine), so kubernetes-validate cannot check them. Instead every
field the overlays use is checked here against the CRDs of:

  CloudNativePG 1.25 (postgresql.cnpg.io/v1)    cert-manager 1.16 (cert-manager.io/v1)

An unknown field is a failure, not a warning: the API server prunes fields a structural
CRD schema does not know, silently, so a misspelt ``tolerations`` would leave the kms
database free to land on any node. The allowed fields are the CRDs' (a subset: those an
overlay may reasonably use); the enumerations and patterns are the CRDs' own.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.xdist_group("deploy")

RELEASED = ("production", "site-data", "site-keys")

#: path -> the fields the CRD allows there ("*": a map of user keys, e.g. labels).
CLUSTER_FIELDS: dict[str, set[str]] = {
    "spec": {"instances", "imageName", "primaryUpdateStrategy", "primaryUpdateMethod",
             "enableSuperuserAccess", "inheritedMetadata", "bootstrap", "storage",
             "walStorage", "resources", "affinity", "postgresql", "backup", "description",
             "monitoring", "certificates", "minSyncReplicas", "maxSyncReplicas",
             "startDelay", "stopDelay", "smartShutdownTimeout", "switchoverDelay",
             "failoverDelay", "logLevel", "topologySpreadConstraints"},
    "spec.inheritedMetadata": {"labels", "annotations"},
    "spec.bootstrap": {"initdb", "recovery", "pg_basebackup"},
    "spec.bootstrap.initdb": {"database", "owner", "secret", "encoding", "localeCollate",
                              "localeCType", "dataChecksums", "walSegmentSize",
                              "postInitSQL", "postInitApplicationSQL", "import"},
    "spec.storage": {"size", "storageClass", "resizeInUseVolumes", "pvcTemplate"},
    "spec.walStorage": {"size", "storageClass", "resizeInUseVolumes", "pvcTemplate"},
    "spec.resources": {"requests", "limits", "claims"},
    "spec.affinity": {"enablePodAntiAffinity", "topologyKey", "podAntiAffinityType",
                      "nodeSelector", "nodeAffinity", "tolerations",
                      "additionalPodAntiAffinity", "additionalPodAffinity"},
    "spec.postgresql": {"parameters", "pg_hba", "pg_ident", "shared_preload_libraries",
                        "syncReplicaElectionConstraint", "ldap", "promotionTimeout",
                        "enableAlterSystem", "synchronous"},
    "spec.backup": {"retentionPolicy", "barmanObjectStore", "target", "volumeSnapshot"},
    "spec.backup.barmanObjectStore": {"destinationPath", "endpointURL", "endpointCA",
                                      "s3Credentials", "azureCredentials",
                                      "googleCredentials", "wal", "data", "serverName",
                                      "tags", "historyTags"},
    "spec.backup.barmanObjectStore.s3Credentials": {"accessKeyId", "secretAccessKey",
                                                    "region", "sessionToken",
                                                    "inheritFromIAMRole"},
    "spec.backup.barmanObjectStore.s3Credentials.accessKeyId": {"name", "key"},
    "spec.backup.barmanObjectStore.s3Credentials.secretAccessKey": {"name", "key"},
    "spec.backup.barmanObjectStore.wal": {"compression", "encryption", "maxParallel",
                                          "archiveAdditionalCommandArgs",
                                          "restoreAdditionalCommandArgs"},
    "spec.backup.barmanObjectStore.data": {"compression", "encryption", "jobs",
                                           "immediateCheckpoint",
                                           "additionalCommandArgs"},
}
SCHEDULED_BACKUP_FIELDS: dict[str, set[str]] = {
    "spec": {"schedule", "cluster", "backupOwnerReference", "immediate", "suspend",
             "method", "target", "online", "onlineConfiguration", "pluginConfiguration"},
    "spec.cluster": {"name"},
}
CERTIFICATE_FIELDS: dict[str, set[str]] = {
    "spec": {"secretName", "issuerRef", "dnsNames", "ipAddresses", "uris", "emailAddresses",
             "commonName", "duration", "renewBefore", "renewBeforePercentage", "privateKey",
             "usages", "isCA", "subject", "secretTemplate", "keystores",
             "revisionHistoryLimit", "literalSubject", "additionalOutputFormats",
             "nameConstraints", "otherNames", "encodeUsagesInRequest"},
    "spec.issuerRef": {"name", "kind", "group"},
    "spec.privateKey": {"algorithm", "size", "rotationPolicy", "encoding"},
}
#: The CRDs' enumerations for the fields used.
ENUMS = {
    "Cluster": {"spec.primaryUpdateStrategy": {"unsupervised", "supervised"},
                "spec.affinity.podAntiAffinityType": {"preferred", "required"},
                "spec.backup.barmanObjectStore.wal.compression":
                    {"bzip2", "gzip", "lz4", "snappy", "xz", "zstd"},
                "spec.backup.barmanObjectStore.wal.encryption": {"AES256", "aws:kms"},
                "spec.backup.barmanObjectStore.data.compression": {"bzip2", "gzip", "snappy"},
                "spec.backup.barmanObjectStore.data.encryption": {"AES256", "aws:kms"}},
    "ScheduledBackup": {"spec.backupOwnerReference": {"none", "self", "cluster"}},
    "Certificate": {"spec.privateKey.algorithm": {"RSA", "ECDSA", "Ed25519"},
                    "spec.privateKey.rotationPolicy": {"Never", "Always"},
                    "spec.issuerRef.kind": {"Issuer", "ClusterIssuer"}},
}
KEY_USAGES = {"signing", "digital signature", "content commitment", "key encipherment",
              "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
              "decipher only", "any", "server auth", "client auth", "code signing",
              "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
              "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}
FIELDS = {"Cluster": CLUSTER_FIELDS, "ScheduledBackup": SCHEDULED_BACKUP_FIELDS,
          "Certificate": CERTIFICATE_FIELDS}
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$")
GO_DURATION = re.compile(r"^([0-9]+(h|m|s))+$")


def objects(documents, kind):
    for overlay in RELEASED:
        for d in documents[overlay]:
            if d["kind"] == kind:
                yield overlay, d


def get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def unknown_fields(doc: dict[str, Any], fields: dict[str, set[str]]) -> list[str]:
    """Every key, at every path the table describes, that the CRD does not know."""
    found = []
    for path, allowed in fields.items():
        node = get(doc, path)
        if node is None:
            continue
        found += [f"{path}.{key}" for key in set(node) - allowed]
    return sorted(found)


class TestFieldsExist:
    @pytest.mark.parametrize("kind", sorted(FIELDS))
    def test_every_field_is_one_the_crd_knows(self, documents, kind):
        seen = 0
        for overlay, d in objects(documents, kind):
            seen += 1
            assert d["apiVersion"] == ("cert-manager.io/v1" if kind == "Certificate"
                                       else "postgresql.cnpg.io/v1")
            assert unknown_fields(d, FIELDS[kind]) == [], (overlay, d["metadata"]["name"])
        assert seen, kind

    def test_a_misspelt_field_is_caught(self, documents):
        (_, cluster) = next(objects(documents, "Cluster"))
        broken = {**cluster, "spec": {**cluster["spec"], "affinity": {
            **cluster["spec"]["affinity"], "toleration": []}}}
        assert unknown_fields(broken, CLUSTER_FIELDS) == ["spec.affinity.toleration"]

    @pytest.mark.parametrize("kind", sorted(ENUMS))
    def test_enumerations(self, documents, kind):
        for overlay, d in objects(documents, kind):
            for path, allowed in ENUMS[kind].items():
                value = get(d, path)
                assert value is None or value in allowed, (overlay, path, value)


class TestCluster:
    def test_required_fields_and_types(self, documents):
        for overlay, c in objects(documents, "Cluster"):
            spec, where = c["spec"], (overlay, c["metadata"]["name"])
            assert isinstance(spec["instances"], int) and spec["instances"] >= 1, where
            assert QUANTITY.match(spec["storage"]["size"]), where
            assert QUANTITY.match(spec["walStorage"]["size"]), where
            # postgresql.parameters is map[string]string: a bare 200 would be refused.
            assert all(isinstance(v, str) for v in spec["postgresql"]["parameters"].values())
            backup = spec["backup"]
            assert re.fullmatch(r"[1-9][0-9]*[dwm]", backup["retentionPolicy"]), where
            store = backup["barmanObjectStore"]
            assert re.match(r"^s3://[a-z0-9.-]+/", store["destinationPath"]), where
            for key in ("accessKeyId", "secretAccessKey"):
                assert set(store["s3Credentials"][key]) == {"name", "key"}, where
            for t in spec["affinity"].get("tolerations", []):
                assert set(t) <= {"key", "operator", "value", "effect", "tolerationSeconds"}
                assert t["effect"] in {"NoSchedule", "PreferNoSchedule", "NoExecute"}
            assert spec["bootstrap"]["initdb"]["database"] == spec["bootstrap"]["initdb"]["owner"]


class TestScheduledBackup:
    def test_schedule_has_six_fields_and_names_a_cluster_of_the_overlay(self, documents):
        for overlay in RELEASED:
            clusters = {(d["metadata"]["namespace"], d["metadata"]["name"])
                        for d in documents[overlay] if d["kind"] == "Cluster"}
            for d in documents[overlay]:
                if d["kind"] != "ScheduledBackup":
                    continue
                # CloudNativePG's cron has a seconds field first (robfig/cron with seconds).
                assert len(d["spec"]["schedule"].split()) == 6, d["metadata"]["name"]
                assert (d["metadata"]["namespace"], d["spec"]["cluster"]["name"]) in clusters


class TestCertificate:
    def test_usages_durations_and_issuer(self, documents):
        for overlay, c in objects(documents, "Certificate"):
            spec, where = c["spec"], (overlay, c["metadata"]["name"])
            assert set(spec["usages"]) <= KEY_USAGES, where
            assert GO_DURATION.match(spec["duration"]) and GO_DURATION.match(
                spec["renewBefore"]), where
            hours = int(spec["duration"].removesuffix("h"))
            assert int(spec["renewBefore"].removesuffix("h")) < hours, where
            assert spec["privateKey"]["algorithm"] != "ECDSA" or spec["privateKey"]["size"] in \
                (256, 384, 521), where
            assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer",
                                         "name": "ecrin-internal-ca"}, where
            assert spec["dnsNames"] and spec["secretName"], where
