"""What this service is and who is calling: a first public route, and a smoke test of
the internal token's principal."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ecrin_platform.deps import InternalClaimsDep

router = APIRouter(prefix="/v1/files", tags=["sharing"])


class ServiceInfo(BaseModel):
    service: str
    version: str
    account_id: str | None


@router.get("/service-info", response_model=ServiceInfo, summary="Describe the sharing service")
async def service_info(claims: InternalClaimsDep) -> ServiceInfo:
    principal = claims.principal
    return ServiceInfo(service="sharing", version="0.1.0",
                       account_id=principal.account_id if principal else None)
