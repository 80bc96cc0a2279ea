"""The restore drill's machinery on a small data set: a private PostgreSQL instance
(deploy/pg_instance.py) with WAL archiving, `pg_basebackup -X stream` + `pg_verifybackup`,
writes after the base backup, a target time, writes after it, the instance destroyed, and a
point-in-time recovery into a fresh data directory. What precedes the target comes back byte
for byte (some of it only from the archived WAL), what follows it does not.

The whole drill (`make restore-drill`: the four services on four instances, the story through
the CLI, every record read back) takes minutes, so it is a make target of its own
(docs/deploy.md has its figures); this test is its ~15 s core. It needs the PostgreSQL server
binaries and, as root, the `postgres` OS user (initdb refuses root): where they are missing it
is skipped with the reason, except under CI=true or ECRIN_TEST_REQUIRE_PG_DRILL=1, where it
fails.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

pytestmark = [pytest.mark.xdist_group("restore-drill"), pytest.mark.timeout(240)]


def load_pg_instance():
    """deploy/pg_instance.py (beside a script, not in a package), registered in sys.modules
    as dataclasses need."""
    name = "ecrin_deploy_pg_instance"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "pg_instance.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pg_instance = load_pg_instance()


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace(" ", "T"))


@pytest.fixture(scope="module")
def recovered():
    reason = pg_instance.unavailable()
    if reason is not None:
        if os.environ.get("CI") or os.environ.get("ECRIN_TEST_REQUIRE_PG_DRILL"):
            pytest.fail(f"the restore drill cannot run here: {reason}")
        pytest.skip(f"the restore drill needs PostgreSQL's server binaries: {reason}")
    # pytest's own temporary folders are private to us; the server's user needs to cross
    # this one (to its own 0700 folder inside) and nothing more
    work = Path(tempfile.mkdtemp(prefix="ecrin-pitr-test-"))
    work.chmod(0o711)
    instance = pg_instance.Instance("pitr", work / "pg")
    rows = {name: os.urandom(64).hex() for name in ("base", "wal", "lost")}
    out: dict = {"instance": instance, "rows": rows, "data": work / "pg" / "data"}
    try:
        instance.init()
        instance.start()
        instance.create_database("drill")
        instance.psql("CREATE TABLE t (name text PRIMARY KEY, content bytea)", "drill")
        insert = "INSERT INTO t VALUES ('{0}', decode('{1}', 'hex'))"
        instance.psql(insert.format("base", rows["base"]), "drill")
        out["backup"] = instance.base_backup()
        instance.psql(insert.format("wal", rows["wal"]), "drill")  # only the WAL has it
        time.sleep(1)
        out["target"] = instance.psql("SELECT clock_timestamp()")
        time.sleep(1)
        instance.psql(insert.format("lost", rows["lost"]), "drill")
        instance.archive_now()
        instance.destroy()
        out["destroyed"] = not out["data"].exists()
        out["recovery"] = instance.recover(out["target"])
        out["read"] = instance.psql("SELECT name || '=' || encode(content, 'hex') FROM t "
                                    "ORDER BY name", "drill").splitlines()
        instance.psql(insert.format("new", "00"), "drill")  # read-write after promotion
        out["new_archive_segment"] = instance.archive_now()
        yield out
    finally:
        instance.stop("immediate")
        shutil.rmtree(work, ignore_errors=True)


class TestPointInTimeRecovery:
    def test_the_backup_verifies_and_the_instance_was_destroyed(self, recovered):
        assert recovered["backup"]["verified"] == "backup successfully verified"
        assert recovered["destroyed"]

    def test_what_precedes_the_target_is_back_byte_for_byte(self, recovered):
        rows = recovered["rows"]
        assert recovered["read"] == [f"base={rows['base']}", f"wal={rows['wal']}"]
        # the row written after the base backup came from the archive, not the backup
        assert recovered["recovery"]["segments_from_archive"] >= 1

    def test_recovery_stopped_at_the_first_commit_after_the_target(self, recovered):
        stopped = parse_time(recovered["recovery"]["stopped_before_commit_at"])
        assert stopped > parse_time(recovered["target"])
        assert not any(r.startswith("lost=") for r in recovered["read"])

    def test_the_recovered_instance_archives_to_a_new_archive(self, recovered):
        instance = recovered["instance"]
        assert instance.archive.name == "wal-archive-recovered"
        assert (instance.archive / recovered["new_archive_segment"]).exists()
        assert recovered["new_archive_segment"].startswith("00000002")  # a new timeline

    def test_a_damaged_backup_fails_verification(self, recovered):
        instance = recovered["instance"]
        victim = next(p for p in sorted((instance.base / "base").rglob("*"))
                      if p.is_file() and p.stat().st_size > 8192)
        data = bytearray(victim.read_bytes())
        data[4096] ^= 0xFF
        victim.write_bytes(bytes(data))
        with pytest.raises(pg_instance.PostgresError, match="checksum mismatch"):
            instance.run(instance.bin / "pg_verifybackup", instance.base)


def test_the_drill_script_starts():
    """`make restore-drill` imports its sibling deploy/pg_instance.py: the script runs."""
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "restore_drill.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "--patients" in done.stdout


#: The recovery fields of CloudNativePG 1.25's Cluster CRD (postgresql.cnpg.io/v1) the runbook
#: may use, beside those test_operator_schemas.py checks on the overlays.
RECOVERY_FIELDS: dict[str, set[str]] = {
    "spec": {"externalClusters"},
    "spec.bootstrap.recovery": {"source", "database", "owner", "secret", "backup",
                                "volumeSnapshots", "recoveryTarget"},
    "spec.bootstrap.recovery.recoveryTarget": {"backupID", "targetTLI", "targetXID",
                                               "targetName", "targetLSN", "targetTime",
                                               "targetImmediate", "exclusive"},
}
EXTERNAL_CLUSTER_FIELDS = {"name", "connectionParameters", "sslCert", "sslKey", "sslRootCert",
                           "password", "barmanObjectStore"}


def runbook_cluster() -> dict:
    """The recovered Cluster of docs/deploy.md's runbook (the YAML block naming
    records-db-pitr)."""
    import re

    import yaml

    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    found = [yaml.safe_load(b) for b in blocks if "name: records-db-pitr" in b]
    assert len(found) == 1, "the runbook's recovered Cluster is missing from docs/deploy.md"
    return found[0]


@pytest.fixture(scope="module")
def pair(documents):
    """(the runbook's recovered Cluster, records-db as the production overlay renders it)"""
    source = next(d for d in documents["production"]
                  if d["kind"] == "Cluster" and d["metadata"]["name"] == "records-db")
    return runbook_cluster(), source


class TestRunbook:
    """The runbook's Cluster is what CloudNativePG accepts and recovers the real records-db:
    a docs example that drifts from the manifests would fail on the night it is needed."""

    def test_every_field_is_one_the_crd_knows(self, pair):
        from tests.deploy.test_operator_schemas import CLUSTER_FIELDS, unknown_fields

        recovered, _ = pair
        fields = {k: set(v) for k, v in CLUSTER_FIELDS.items()}
        for path, allowed in RECOVERY_FIELDS.items():
            fields[path] = fields.get(path, set()) | allowed
        assert unknown_fields(recovered, fields) == []
        store_fields = CLUSTER_FIELDS["spec.backup.barmanObjectStore"]
        for external in recovered["spec"]["externalClusters"]:
            assert set(external) <= EXTERNAL_CLUSTER_FIELDS
            assert set(external["barmanObjectStore"]) <= store_fields

    def test_it_recovers_from_the_source_archive(self, pair):
        recovered, source = pair
        recovery = recovered["spec"]["bootstrap"]["recovery"]
        external = {e["name"]: e for e in recovered["spec"]["externalClusters"]}
        # the external cluster's name is the serverName the source archives under
        assert recovery["source"] == source["metadata"]["name"] in external
        assert (external[recovery["source"]]["barmanObjectStore"]
                == source["spec"]["backup"]["barmanObjectStore"])
        assert "targetTime" in recovery["recoveryTarget"]
        initdb = source["spec"]["bootstrap"]["initdb"]
        assert (recovery["database"], recovery["owner"]) == (initdb["database"], initdb["owner"])

    def test_it_archives_apart_from_the_source(self, pair):
        recovered, source = pair
        store = recovered["spec"]["backup"]["barmanObjectStore"]
        server_name = store.get("serverName", recovered["metadata"]["name"])
        assert server_name != source["metadata"]["name"]
        assert store["s3Credentials"] == source["spec"]["backup"]["barmanObjectStore"][
            "s3Credentials"]

    def test_it_keeps_what_the_deployment_relies_on(self, pair):
        recovered, source = pair
        for path in ("imageName", "inheritedMetadata", "postgresql", "affinity",
                     "enableSuperuserAccess", "instances"):
            assert recovered["spec"][path] == source["spec"][path], path
