"""Runs the four services as local processes: ``make run`` and the end-to-end tests.

Generates the internal-token key pair and each service's audit signing key under the state
folder (never committed; kept across runs, as devices pin the audit keys), migrates each
service's own database, starts each service on its own port, and stops them all.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ecrin_platform.tokens import generate_keypair_pem

SERVICES = {
    # service: (python package, environment prefix, default port)
    "gateway": ("gateway", "ECRIN_GATEWAY_", 8000),
    "records-api": ("records_api", "ECRIN_RECORDS_", 8001),
    "kms": ("kms", "ECRIN_KMS_", 8002),
    "sharing": ("sharing", "ECRIN_SHARING_", 8003),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_keys(state: Path, name: str = "internal-token") -> tuple[Path, Path]:
    keys = state / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    private, public = keys / f"{name}.key", keys / f"{name}.pub"
    if not private.exists():
        private_pem, public_pem = generate_keypair_pem()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        public.write_bytes(public_pem)
    return private, public


def ensure_secret(state: Path, name: str) -> Path:
    """A random 32-byte key in base64url (the gateway's TOTP at-rest key), made once."""
    path = state / "keys" / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode())
    return path


@dataclass
class Stack:
    state: Path
    database_urls: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    #: Each service's /metrics listener, apart from its public port.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path | None = None
    audit_keys: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        for service, (package, _, port) in SERVICES.items():
            self.database_urls.setdefault(
                service, f"sqlite+aiosqlite:///{(self.state / f'{package}.db').resolve()}")
            self.ports.setdefault(service, port)
            self.metrics_ports.setdefault(
                service, port + 1000 if self.ports[service] == port else free_port())
        self.private_key, self.public_key = ensure_keys(self.state)
        self.access_key, _ = ensure_keys(self.state, "access-token")
        self.totp_key = ensure_secret(self.state, "totp-at-rest")
        for service in SERVICES:
            self.audit_keys.setdefault(service, ensure_keys(self.state, f"audit-{service}")[0])

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    def env(self, service: str) -> dict[str, str]:
        package, prefix, _ = SERVICES[service]
        env = {**os.environ, **self.extra_env,
               f"{prefix}DATABASE_URL": self.database_urls[service],
               f"{prefix}AUDIT_SIGNING_KEY_FILE": str(self.audit_keys[service])}
        if service == "gateway":
            env[f"{prefix}INTERNAL_TOKEN_PRIVATE_KEY_FILE"] = str(self.private_key)
            env[f"{prefix}ACCESS_TOKEN_PRIVATE_KEY_FILE"] = str(self.access_key)
            env[f"{prefix}TOTP_KEY_FILE"] = str(self.totp_key)
            env[f"{prefix}RECORDS_URL"] = self.url("records-api")
            env[f"{prefix}KMS_URL"] = self.url("kms")
            env[f"{prefix}SHARING_URL"] = self.url("sharing")
        else:
            env[f"{prefix}INTERNAL_TOKEN_PUBLIC_KEY_FILE"] = str(self.public_key)
            if service in ("records-api", "kms"):
                env[f"{prefix}SHARING_URL"] = self.url("sharing")
            if service == "records-api":  # large documents as files beside the database
                env.setdefault(f"{prefix}CONTENT_DIR", str(self.state / "records-content"))
            # When a file's access changes, the sharing service tells the records API and,
            # on this one machine, the kms too (sharing.notify: the answer waits for them).
            # Both also follow its feed, as in every deployment, where the feed alone tells
            # the kms: ECRIN_SHARING_KMS_URL="" (or ECRIN_SHARING_RECORDS_URL="") in
            # ``extra_env`` leaves it at that.
            if service == "sharing":
                env.setdefault(f"{prefix}RECORDS_URL", self.url("records-api"))
                env.setdefault(f"{prefix}KMS_URL", self.url("kms"))
        return env

    def migrate(self) -> None:
        """Every service's database to head. Each service has a database of its own, so the
        four migrations run at once (most of each is the service's start-up)."""
        # noqa S603: a fixed argv, this interpreter and one of our own service packages.
        running = [subprocess.Popen([sys.executable, "-m", package, "migrate"],  # noqa: S603
                                    env=self.env(service))
                   for service, (package, _, _) in SERVICES.items()]
        failed = [process for process in running if process.wait() != 0]
        if failed:
            raise subprocess.CalledProcessError(failed[0].returncode, failed[0].args)

    def start(self, service: str) -> None:
        package = SERVICES[service][0]
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{service}.log", "ab")  # noqa: SIM115
        self.processes[service] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", package, "serve", "--port", str(self.ports[service]),
             "--metrics-port", str(self.metrics_ports[service])],
            env=self.env(service), stdout=out, stderr=subprocess.STDOUT if out else None)

    def start_all(self) -> None:
        """Every service, ready; if one cannot start (its port taken, a bad setting), the
        others are stopped before the error is raised, not left holding their ports."""
        try:
            for service in SERVICES:
                self.start(service)
            self.wait_ready()
        except BaseException:
            self.stop_all()
            raise

    def wait_ready(self, timeout: float = 60.0, services: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for service in services or list(SERVICES):
            while True:
                process = self.processes.get(service)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{service} exited with {process.returncode}")
                try:
                    if httpx.get(self.url(service) + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} did not become ready")
                time.sleep(0.1)

    def stop(self, service: str, sig: int = signal.SIGTERM) -> None:
        process = self.processes.pop(service, None)
        if process is None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        for service in list(self.processes):
            self.stop(service)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the four Écrin services locally.")
    parser.add_argument("--state", type=Path, default=Path("var"))
    args = parser.parse_args()
    # The web app's build (make web), served by the gateway on its own origin.
    web_dist = Path(os.environ.get("ECRIN_GATEWAY_WEB_DIST", "web/dist")).resolve()
    stack = Stack(state=args.state, extra_env={"ECRIN_GATEWAY_DEVELOPMENT_PROFILE": "true",
                                               "ECRIN_GATEWAY_WEB_DIST": str(web_dist)},
                  log_dir=args.state / "logs")
    print("Migrating four SQLite databases under", args.state.resolve(), flush=True)
    stack.migrate()
    stack.start_all()
    gateway = stack.url("gateway")
    web = (f"{gateway}/ (practitioners {gateway}/pro, patients and families {gateway}/portail)"
           if (web_dist / "build.json").exists() else f"not built ({web_dist}: make web)")
    print(f"\nÉcrin is running.\n  web app: {web}\n  gateway: {gateway}\n"
          f"  API docs: {gateway}/docs\n"
          f"  OpenAPI: {gateway}/openapi.json\n"
          + "".join(f"  {s}: {stack.url(s)} (internal; needs the gateway's token)\n"
                    for s in SERVICES if s != "gateway")
          + "".join(f"  {s} metrics: {stack.metrics_url(s)} (not on the public port)\n"
                    for s in SERVICES)
          + f"  logs: {stack.log_dir}/<service>.log (JSON lines)\n"
          + "Development profile: require_practitioner_2fa is OFF, so practitioners reach "
            "patient data without a second factor.\n"
          + "Press Ctrl-C to stop all four.", flush=True)
    # A SIGTERM (a supervisor, `timeout`) stops the four services like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        print("A service exited; stopping the others.", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
    finally:
        stack.stop_all()


if __name__ == "__main__":
    main()
