"""Schemathesis against the real services: the gateway's merged document authenticated as
two practices (peers for the object-level authorisation check), and each service's own
document called straight with internal tokens minted from the stack's key.

``python -m tests.adversarial.fuzz --seconds 600`` starts its own stack (``make fuzz``);
``run_all`` is what the short pass in ``make test`` calls on the shared stack.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.users import ApiUser, sign_up

SEED = 20261128
#: Every check schemathesis has but two: ``positive_data_acceptance`` (a schema-valid body
#: is still refused when its signature or ids do not verify: the schema cannot say what a
#: valid Ed25519 signature is) and ``max_response_time``.
#: Left out as well: ``ensure_resource_availability`` (a new file is pending, so invisible
#: and 404, until its first keyring is stored in the kms: a read right after the create is
#: meant to miss).
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
          "missing_required_header,unsupported_method,use_after_free,ignored_auth,"
          "object_level_authorization,allow_header_conformance")
#: Checks on the services' own documents: their routes take the principal from the internal
#: token, so the gateway-level auth checks do not apply there.
#: ``unsupported_method`` is left out there too: a service's internal-token guard answers
#: before routing, by design (without the token it reveals nothing, not even its methods).
SERVICE_CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
                  "response_schema_conformance,negative_data_rejection,"
                  "missing_required_header,use_after_free")
PHASES = "examples,coverage,fuzzing,stateful"

#: A hooks module for the CLI: a fresh internal token (<= 60 s) on every request.
SERVICE_HOOKS = '''
import os
from pathlib import Path

import schemathesis
from ecrin_platform.tokens import HEADER, InternalTokenIssuer, Principal

ISSUER = InternalTokenIssuer(Path(os.environ["ECRIN_FUZZ_INTERNAL_KEY"]).read_bytes())
PRINCIPAL = Principal(os.environ["ECRIN_FUZZ_ACCOUNT"], "practitioner", second_factor=True)


@schemathesis.auth()
class InternalToken:
    def get(self, case, context):
        return ISSUER.issue(os.environ["ECRIN_FUZZ_AUDIENCE"], principal=PRINCIPAL)

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), HEADER: data}
'''


@dataclass
class Result:
    target: str
    exit_code: int
    cases: int
    failures: list[str]
    output: str

    def summary(self) -> str:
        return (f"{self.target}: exit {self.exit_code}, {self.cases} test cases, "
                f"{len(self.failures)} failures")


def practices(gateway: str) -> dict[str, ApiUser]:
    """Two practitioners of two practices, each with a file (objects for the peers check)."""
    users = {"practice-a": sign_up(gateway), "practice-b": sign_up(gateway)}
    for user in users.values():
        user.create_file()
    return users


def _run(target: str, args: list[str], env: dict[str, str], work: Path) -> Result:
    report = work / f"{target}.ndjson"
    command = [sys.executable, "-m", "schemathesis.cli", "run", *args, "--seed", str(SEED),
               "--no-color", "--report", "ndjson", "--report-ndjson-path", str(report),
               "--output-truncate", "true", "--warnings", "off"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work,  # noqa: S603
                          timeout=3600)
    cases, failures = 0, []
    if report.exists():
        for line in report.read_text().splitlines():
            event = json.loads(line).get("ScenarioFinished")
            if isinstance(event, dict):
                recorder = event.get("recorder") or {}
                cases += len(recorder.get("cases") or {})
                failures += _failures(recorder, recorder.get("checks") or {})
    return Result(target, done.returncode, cases, failures, done.stdout[-20000:] + done.stderr)


def _failures(recorder: dict[str, Any], checks: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per failed check: code, operation, what was received."""
    found = []
    interactions = recorder.get("interactions") or {}
    for case_id, results in checks.items():
        response = (interactions.get(case_id) or {}).get("response") or {}
        for check in results:
            if check.get("status") != "failure":
                continue
            failure = (check.get("failure_info") or {}).get("failure") or {}
            message = (failure.get("message") or "").splitlines()
            found.append(f"{failure.get('code', check.get('name'))} {failure.get('operation')} "
                         f"-> {response.get('status_code')}: {failure.get('title')}"
                         f" ({message[0] if message else ''})")
    return found


def fuzz_gateway(gateway: str, users: dict[str, ApiUser], seconds: int, work: Path,
                 max_examples: int) -> Result:
    wfc = {"auth": [{"name": name, "fixedHeaders": [
        {"name": "Authorization", "value": f"Bearer {user.tokens['access_token']}"}]}
        for name, user in users.items()]}
    (work / "wfc.json").write_text(json.dumps(wfc))
    (work / "schemathesis.toml").write_text(textwrap.dedent(f"""
        [auth.wfc]
        path = "{work / 'wfc.json'}"
        peers = ["practice-a", "practice-b"]

        # The public-key directory is readable by every account by design: a client fetches
        # an identity to compare its fingerprint before sharing (docs/accounts.md).
        [[operations]]
        include-path = "/v1/directory/{{account_id}}"
        include-method = "GET"
        checks.object_level_authorization.enabled = false
    """))
    args = [f"{gateway}/openapi.json", "--url", gateway, "--phases", PHASES,
            "--checks", CHECKS, "--max-time", str(seconds), "--max-examples", str(max_examples),
            "--workers", "1", "--request-timeout", "30",
            # Logging out or revoking one's own sessions ends the run's own credentials.
            "--exclude-path", "/v1/auth/logout", "--exclude-path-regex", "^/v1/auth/sessions/",
            "--exclude-path", "/v1/auth/passphrase"]
    return _run("gateway", args, {**os.environ}, work)


def fuzz_service(service: str, url: str, key_file: Path, account: str, seconds: int,
                 work: Path, max_examples: int) -> Result:
    hooks = work / "ecrin_fuzz_hooks.py"
    hooks.write_text(SERVICE_HOOKS)
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "ecrin_fuzz_hooks",
           "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "ECRIN_FUZZ_INTERNAL_KEY": str(key_file), "ECRIN_FUZZ_ACCOUNT": account,
           "ECRIN_FUZZ_AUDIENCE": service}
    from ecrin_platform.tokens import HEADER, InternalTokenIssuer

    token = InternalTokenIssuer(key_file.read_bytes()).issue(service)
    # The service answers its document to an internal token only: fetch it once, fuzz the file.
    import httpx

    document = httpx.get(f"{url}/openapi.json", headers={HEADER: token}).json()
    # The same public description the gateway publishes for this service (problems
    # declared, links), without the gateway's own routes.
    from gateway.openapi import merge

    document = merge({"openapi": document["openapi"], "info": document["info"], "paths": {}},
                     {service: document})
    schema = work / f"{service}-openapi.json"
    schema.write_text(json.dumps(document))
    args = [str(schema), "--url", url, "--phases", PHASES, "--checks", SERVICE_CHECKS,
            "--max-time", str(seconds), "--max-examples", str(max_examples), "--workers", "1",
            "--request-timeout", "30"]
    return _run(service, args, env, work)


#: Each service's own pass. A scenario cut short by --max-time reports no case, and on a
#: loaded two-core machine the kms's first scenario once took over 5 s: 0 cases, a failure.
SERVICE_MIN_SECONDS = 8


def run_all(stack: Any, seconds: int, max_examples: int, work: Path) -> list[Result]:
    gateway = stack.url("gateway")
    users = practices(gateway)
    results = [fuzz_gateway(gateway, users, seconds, work, max_examples)]
    account = str(users["practice-a"].account_id)
    for service in ("records-api", "kms", "sharing"):
        service_work = work / service
        service_work.mkdir(exist_ok=True)
        results.append(fuzz_service(service, stack.url(service), stack.private_key, account,
                                    max(SERVICE_MIN_SECONDS, seconds // 3), service_work,
                                    max_examples))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=600, help="budget for the gateway run")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    from tests.support.stack import start_stack

    with tempfile.TemporaryDirectory(prefix="ecrin-fuzz-") as tmp:
        stack = start_stack(args.backend, Path(tmp) / "state", "fuzz")
        try:
            results = run_all(stack, args.seconds, args.max_examples, Path(tmp))
        finally:
            stack.stop_all()
        for result in results:
            print(result.summary())
            for failure in sorted(set(result.failures)):
                print("   ", failure)
            if result.exit_code != 0:
                print(result.output)
        sys.exit(0 if all(r.exit_code == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
