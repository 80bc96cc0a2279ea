"""Mutual TLS between the gateway and the services.

In Kubernetes cert-manager issues each service a certificate from one internal CA and
mounts ``tls.crt``, ``tls.key`` and ``ca.crt``; the settings name the three files
(``tls_cert_file``, ``tls_key_file``, ``tls_ca_file``). A service then listens over TLS and
accepts only clients with a certificate from that CA, and its own calls (the gateway's to
every service, records-api's and kms's to sharing) present its certificate and verify the
callee's against the same CA. The internal token still authenticates every call: mTLS keeps
the network from reading or forging it; it does not replace it.

Nothing here is used when the files are unset (``make run`` on loopback).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the exec probe imports this module: it must start fast
    from ecrin_platform.settings import ServiceSettings

#: The floor for every internal hop: nothing older is offered or accepted.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for the public listener (empty: plain HTTP)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(settings.tls_cert_file),
                               "ssl_keyfile": str(settings.tls_key_file)}
    if settings.tls_ca_file is not None and settings.tls_require_client_cert:
        options["ssl_ca_certs"] = str(settings.tls_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def client_context(settings: ServiceSettings) -> ssl.SSLContext | bool:
    """The ``verify`` argument of this service's httpx client: with a CA, a context that
    trusts only that CA, checks host names and presents this service's certificate; without
    one, ``True`` (the system's trust store, for whatever https URL is configured)."""
    if settings.tls_ca_file is None:
        return True
    return mutual_client_context(settings.tls_ca_file, settings.tls_cert_file,
                                 settings.tls_key_file)


def mutual_client_context(ca_file: Path, cert_file: Path | None,
                          key_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = MINIMUM_VERSION
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context
