"""The four-host run: deploy/netns/run.sh, as `make netns-e2e` runs it.

It needs root and network namespaces. On this project's machines (CI included) both are
there, so it runs in `make test`; where they are not (a laptop without root), it is skipped
with the reason, unless ECRIN_TEST_REQUIRE_NETNS=1 or CI is set, where it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import pytest

from tests.deploy.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("netns"), pytest.mark.timeout(330)]


def netns_available() -> str | None:
    """None if network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if shutil.which("ip") is None:
        return "no iproute2"
    name = f"ecrin-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False)
    return None


@pytest.fixture(scope="module")
def netns_run():
    reason = netns_available()
    if reason is not None:
        if os.environ.get("CI") or os.environ.get("ECRIN_TEST_REQUIRE_NETNS"):
            pytest.fail(f"the four-host run cannot run here: {reason}")
        pytest.skip(f"the four-host run needs root and network namespaces: {reason}")
    result = subprocess.run([str(ROOT / "deploy" / "netns" / "run.sh")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "ECRIN_NETNS_TIMEOUT": "270"})
    return result


class TestFourHosts:
    def test_scenario_passes_and_cleans_up(self, netns_run):
        out = netns_run.stdout + netns_run.stderr
        assert netns_run.returncode == 0, out[-4000:]
        assert "netns e2e: all checks passed" in out
        assert "cleaned up" in out

    def test_gateway_routes_to_each_service_across_hosts(self, netns_run):
        for area, svc in [("records", "records-api"), ("keys", "kms"), ("files", "sharing")]:
            assert f"GET /v1/{area}/service-info answered by: {svc}" in netns_run.stdout
        assert "OpenAPI tags: gateway,records-api,kms,sharing" in netns_run.stdout

    def test_the_story_crosses_the_hosts_over_tls(self, netns_run):
        for step in ("sign-up (practitioner, TOTP enrolled)", "patient created",
                     "records written", "invitation accepted by a parent",
                     "parent reads the prescription: decrypted, identical",
                     "parent reads the bilan: refused", "revocation: the parent is refused"):
            assert f"  ok    {step}" in netns_run.stdout, step

    def test_services_answer_only_over_mutual_tls(self, netns_run):
        for line in ("gateway -> kms, its client certificate: 200",
                     "gateway -> kms, no client certificate: 000",
                     "gateway -> kms, plain HTTP: 000", "kms -> kms-db, without TLS: refused"):
            assert f"  ok    {line}" in netns_run.stdout, line

    def test_forbidden_edges_are_blocked(self, netns_run):
        lines = netns_run.stdout.splitlines()
        blocked = [ln.split()[1:4] for ln in lines if ln.strip().endswith(": blocked")]
        assert ["records-api", "->", "kms-db"] in blocked
        assert ["records-api", "->", "kms"] in blocked
        assert ["client", "->", "kms"] in blocked

    def test_no_namespace_is_left_behind(self, netns_run):
        """This run's namespaces (``ecrin-<run id>-*``, named in its last line) are gone;
        another run on the same machine (a `make netns-e2e` beside the tests) is not ours."""
        found = re.search(r"cleaned up: namespaces (ecrin-[0-9a-f]{4})-\*", netns_run.stdout)
        assert found, netns_run.stdout[-2000:]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [ln for ln in listed.splitlines() if ln.startswith(found.group(1) + "-")]
