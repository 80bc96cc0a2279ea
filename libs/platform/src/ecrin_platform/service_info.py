"""``GET /v1/<area>/service-info``: what a service is and who the gateway says is calling.
The same small route in every service, and a smoke test of the internal token."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ecrin_platform.deps import InternalClaimsDep


class ServiceInfo(BaseModel):
    service: str
    version: str
    account_id: str | None


def service_info_router(service: str, area: str, version: str = "0.1.0") -> APIRouter:
    router = APIRouter(prefix=f"/v1/{area}", tags=[service])

    @router.get("/service-info", response_model=ServiceInfo,
                summary=f"Describe the {service} service")
    async def service_info(claims: InternalClaimsDep) -> ServiceInfo:
        principal = claims.principal
        return ServiceInfo(service=service, version=version,
                           account_id=principal.account_id if principal else None)

    return router
