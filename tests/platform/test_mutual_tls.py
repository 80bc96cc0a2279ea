"""The four services over mutual TLS, as real processes: the gateway reaches each service
with its client certificate, and a service refuses a caller without a certificate from the
internal CA. The exec probe (ecrin_platform.probe) answers for a pod behind mTLS."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ecrin_platform.devstack import SERVICES, Stack, free_port
from ecrin_platform.tls import mutual_client_context
from tests.support.certificates import CertificateAuthority
from tests.support.databases import in_thread
from tests.support.stack import TEST_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class TlsStack(Stack):
    """The dev stack with every public listener behind mutual TLS."""

    ca: CertificateAuthority
    client: ssl.SSLContext

    def url(self, service: str) -> str:
        return f"https://localhost:{self.ports[service]}"

    def wait_ready(self, timeout: float = 60.0, services: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for service in services or list(SERVICES):
            while True:
                process = self.processes.get(service)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{service} exited with {process.returncode}")
                try:
                    if httpx.get(self.url(service) + "/readyz", verify=self.client,
                                 timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} did not become ready")
                time.sleep(0.2)


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    state = tmp_path_factory.mktemp("mtls")
    ca = CertificateAuthority(state, "ecrin-internal")
    env = dict(TEST_ENV)
    for service, (_, prefix, _) in SERVICES.items():
        crt, key = ca.issue(service)
        env |= {f"{prefix}TLS_CERT_FILE": str(crt), f"{prefix}TLS_KEY_FILE": str(key),
                f"{prefix}TLS_CA_FILE": str(ca.ca_file)}
    stack = TlsStack(state=state, ports={s: free_port() for s in SERVICES},
                     metrics_ports={s: free_port() for s in SERVICES}, extra_env=env,
                     log_dir=state / "logs")
    stack.ca = ca
    crt, key = ca.issue("test-client")
    stack.client = mutual_client_context(ca.ca_file, crt, key)
    in_thread(stack.migrate)
    try:
        stack.start_all()
    except (RuntimeError, TimeoutError):
        stack.stop_all()
        logs = "\n".join(p.read_text()[-1500:] for p in (state / "logs").glob("*.log"))
        pytest.fail(f"the TLS stack did not start:\n{logs}")
    yield stack
    stack.stop_all()


class TestGatewayToServices:
    @pytest.mark.parametrize(("area", "service"), [("records", "records-api"), ("keys", "kms"),
                                                   ("files", "sharing")])
    def test_the_gateway_forwards_over_mutual_tls(self, tls_stack, area, service):
        response = httpx.get(f"{tls_stack.url('gateway')}/v1/{area}/service-info",
                             verify=tls_stack.client, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["service"] == service


class TestServicesRefuseStrangers:
    @pytest.mark.parametrize("service", ["records-api", "kms", "sharing"])
    def test_no_client_certificate_no_handshake(self, tls_stack, service):
        anonymous = ssl.create_default_context(cafile=str(tls_stack.ca.ca_file))
        with pytest.raises(httpx.HTTPError):
            response = httpx.get(tls_stack.url(service) + "/healthz", verify=anonymous,
                                 timeout=5)
            # TLS 1.3: the server's refusal may only arrive with the first read.
            response.raise_for_status()

    def test_a_certificate_from_another_ca_is_refused(self, tls_stack, tmp_path):
        other = CertificateAuthority(tmp_path, "elsewhere")
        crt, key = other.issue("intruder")
        context = ssl.create_default_context(cafile=str(tls_stack.ca.ca_file))
        context.load_cert_chain(str(crt), str(key))
        with pytest.raises(httpx.HTTPError):
            httpx.get(tls_stack.url("kms") + "/healthz", verify=context,
                      timeout=5).raise_for_status()

    def test_plain_http_is_not_served(self, tls_stack):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{tls_stack.ports['kms']}/healthz",
                      timeout=5).raise_for_status()


class TestExecProbe:
    def probe(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ecrin_platform.probe", *args],
                              capture_output=True, text=True, timeout=30)

    def test_with_the_pods_certificate_the_probe_passes(self, tls_stack):
        crt, key = tls_stack.ca.issue("kms-probe")
        result = self.probe(f"{tls_stack.url('kms')}/readyz", "--ca", str(tls_stack.ca.ca_file),
                            "--cert", str(crt), "--key", str(key))
        assert result.returncode == 0, result.stderr

    def test_without_a_certificate_the_probe_fails(self, tls_stack):
        result = self.probe(f"{tls_stack.url('kms')}/readyz", "--ca", str(tls_stack.ca.ca_file))
        assert result.returncode == 1
        assert "probe" in result.stderr
