"""Request dependencies shared by the services, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ecrin_platform.db import read_only_session, transaction
from ecrin_platform.problems import Forbidden, Unauthorized
from ecrin_platform.tokens import InternalClaims, Principal


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in transaction(request.app.state.sessionmaker):
        yield session


# scope="function": the transaction commits before the response is sent, so an
# acknowledged write is a committed write.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """For routes that only read (``read_only_session``): on SQLite no write lock (WAL lets
    them run beside a writer), on PostgreSQL no BEGIN and ROLLBACK around their queries,
    so each statement reads its own snapshot: what must agree is read in one statement."""
    async with read_only_session(request.app.state.engine) as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


async def get_internal_claims(request: Request) -> InternalClaims:
    claims = request.scope.get("state", {}).get("internal")
    if claims is None:
        raise Unauthorized("A valid internal token is required.")
    return claims


InternalClaimsDep = Annotated[InternalClaims, Depends(get_internal_claims)]


async def get_principal(claims: InternalClaimsDep) -> Principal:
    if claims.principal is None:
        raise Unauthorized("This route needs an authenticated user.")
    return claims.principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_user(principal: CurrentPrincipal) -> Principal:
    """A principal in a normal session: recovery sessions are refused here."""
    if principal.session_kind != "normal":
        raise Forbidden("A recovery session may only reset the passphrase.")
    return principal


CurrentUser = Annotated[Principal, Depends(get_user)]


async def get_gateway_system(claims: InternalClaimsDep) -> InternalClaims:
    """Internal routes: only the gateway's own system calls (never a forwarded request)."""
    if claims.extra.get("system") is not True:
        raise Forbidden("This route is for the gateway only.")
    return claims


GatewaySystem = Annotated[InternalClaims, Depends(get_gateway_system)]


async def get_raw_internal_token(request: Request) -> str:
    """The internal token as received: forwarded to the sharing service's access route."""
    from ecrin_platform.tokens import HEADER

    token = request.headers.get(HEADER)
    if not token:
        raise Unauthorized("A valid internal token is required.")
    return token


RawInternalToken = Annotated[str, Depends(get_raw_internal_token)]
