"""The OpenAPI documents an integrator sees, built in-process without a running stack.

``python -m tests.support.openapi_documents DIR`` writes ``merged.json`` (what the
gateway serves at ``/openapi.json``) and each service's own document into DIR; ``make
lint`` runs Spectral on them, and the tests run the generators on them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ecrin_platform.tokens import generate_keypair_pem

SERVICES = ("gateway", "records-api", "kms", "sharing")
_MODULES = {"gateway": "gateway", "records-api": "records_api", "kms": "kms",
            "sharing": "sharing"}


def service_document(service: str) -> dict[str, Any]:
    """``service``'s own document, as its app generates it (no lifespan, no database)."""
    module = _MODULES[service]
    create_app = __import__(f"{module}.app", fromlist=["create_app"]).create_app
    settings_cls = __import__(f"{module}.settings", fromlist=["Settings"]).Settings
    private, public = generate_keypair_pem()
    keys: dict[str, Any] = {"internal_token_public_key": public.decode(),
                            "audit_signing_key": private.decode(),
                            "database_url": "sqlite+aiosqlite:///:memory:"}
    if service == "gateway":
        keys |= {"internal_token_private_key": private.decode(),
                 "access_token_private_key": private.decode(),
                 "totp_key": "dGVzdC1vbmx5LXRvdHAta2V5LW9mLTMyLWJ5dGVzLi4"}
    doc: dict[str, Any] = create_app(settings_cls(**keys)).openapi()
    return doc


def documents() -> dict[str, dict[str, Any]]:
    """``{"merged": ..., "gateway": ..., "records-api": ..., "kms": ..., "sharing": ...}``."""
    from gateway.openapi import merge

    own = {service: service_document(service) for service in SERVICES}
    merged = merge(own["gateway"], {s: own[s] for s in SERVICES if s != "gateway"})
    return {"merged": merged, **own}


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in documents().items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "var/openapi")):
        print(path)
