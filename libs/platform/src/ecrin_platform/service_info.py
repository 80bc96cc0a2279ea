"""``GET /v1/<area>/service-info``: what a service is and who the gateway says is calling.
The same small route in every service, and a smoke test of the internal token. It also
publishes the public half of the service's audit key (the one devices pin from the audit
routes), so that it can be compared out of band."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ecrin_platform.audit import public_key_text
from ecrin_platform.deps import InternalClaimsDep


class ServiceInfo(BaseModel):
    service: str
    version: str
    account_id: str | None
    #: base64url of the Ed25519 public key that signs this service's audit-chain heads.
    audit_key: str


def service_info_router(service: str, area: str, version: str = "0.1.0") -> APIRouter:
    router = APIRouter(prefix=f"/v1/{area}", tags=[service])

    @router.get("/service-info", response_model=ServiceInfo,
                summary=f"Describe the {service} service")
    async def service_info(claims: InternalClaimsDep, request: Request) -> ServiceInfo:
        principal = claims.principal
        return ServiceInfo(service=service, version=version,
                           account_id=principal.account_id if principal else None,
                           audit_key=public_key_text(request.app.state.audit_key))

    return router
