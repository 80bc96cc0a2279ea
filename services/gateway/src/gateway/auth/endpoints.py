from __future__ import annotations

import asyncio
import io
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from ecrin_platform.deps import SessionDep
from ecrin_platform.tokens import Principal
from gateway.auth.principal import passes_gates, sessions_changed_by
from gateway.auth.ratelimit import AuthRateLimiter
from gateway.auth.repository import AuthRepository
from gateway.auth.schemas import (
    ChallengeIn,
    ChallengeOut,
    DirectoryEntryOut,
    IdentityChangeIn,
    LoginIn,
    LoginOut,
    MeOut,
    PassphraseChangeIn,
    PassphraseLoginIn,
    RecoveryCodesOut,
    RefreshIn,
    SessionOut,
    SignupIn,
    SignupOut,
    StepUpIn,
    TokenPair,
    TotpConfirmIn,
    TotpEnrolmentOut,
)
from gateway.auth.service import Authenticated, AuthService, account_out
from gateway.client_address import client_address

router = APIRouter(prefix="/v1/auth", tags=["gateway"])


async def get_service(request: Request, session: SessionDep) -> AuthService:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread
    return AuthService(AuthRepository(session), request.app.state.auth,
                       sessions_changed_by(request))


Service = Annotated[AuthService, Depends(get_service)]


async def current(request: Request, service: Service) -> Authenticated:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return await service.authenticate(token if scheme.lower() == "bearer" else None)


Current = Annotated[Authenticated, Depends(current)]


async def normal_session(auth: Current) -> Authenticated:
    from ecrin_platform.problems import Forbidden

    if auth.session.kind != "normal":
        raise Forbidden("A recovery session may only reset the passphrase.")
    return auth


CurrentNormal = Annotated[Authenticated, Depends(normal_session)]


async def rate_limit(request: Request, response: Response | None, route: str,
                     account_key: str | None) -> None:
    """Every limited route goes through here: one client address resolution (trusted
    proxies only), the per-route limits, and the ``RateLimit*`` headers on the answer."""
    limiter: AuthRateLimiter = request.app.state.rate_limiter
    headers = await limiter.check(route, client_address(request), account_key)
    if response is not None:
        response.headers.update(headers)


def host_of(request: Request) -> str:
    return request.app.state.settings.public_host or request.headers.get("host", "")


no_store = {"Cache-Control": "no-store"}


async def signup_floor(request: Request) -> AsyncIterator[None]:
    """Holds every sign-up answer until ``signup_min_duration_s`` after arrival. Declared
    before the session, so it exits after the commit: the hold covers it too."""
    started = time.monotonic()
    try:
        yield
    finally:
        floor = request.app.state.settings.signup_min_duration_s
        await asyncio.sleep(max(0.0, floor - (time.monotonic() - started)))


@router.post("/signup", status_code=202, response_model=SignupOut,
             summary="Ask for an account: the same answer whether or not the email is taken",
             description="Always 202 with the request's account id, email and role, in the "
                         "same time. A taken email creates nothing; the account holder "
                         "learns it on logging in (docs/accounts.md).")
async def signup(_floor: Annotated[None, Depends(signup_floor, scope="function")],
                 body: SignupIn, request: Request, service: Service, response: Response,
                 idempotency_key: Annotated[str, Header(min_length=8, max_length=128)]
                 ) -> SignupOut:
    await rate_limit(request, response, "signup", body.email.lower())
    response.headers.update(no_store)
    return await service.signup(body, idempotency_key)


@router.post("/challenge", response_model=ChallengeOut,
             summary="Get a one-time challenge and the account's KDF salt and parameters")
async def challenge(body: ChallengeIn, request: Request, service: Service,
                    response: Response) -> ChallengeOut:
    # Keyed on (email, client): a stranger spends only his own allowance, never the
    # account holder's (docs/deploy.md).
    await rate_limit(request, response, "challenge",
                     f"{body.email.lower()}|{client_address(request)}")
    response.headers.update(no_store)
    return await service.challenge(str(body.email), body.action, host_of(request))


def remember_new_session(request: Request, pair: TokenPair, kind: str, generation: int
                         ) -> Principal:
    """The gateway's session cache learns the session it just opened, so the device's
    next request is not checked against the database again. Kept only if nothing cleared
    the cache meanwhile (``PrincipalCache.put``); a login that does not commit hands its
    token to nobody. Returns the session's principal."""
    principal = Principal(
        account_id=str(pair.account.id), role=pair.account.role,
        session_id=str(pair.session_id), second_factor=pair.second_factor_verified,
        session_kind=kind)
    request.app.state.principal_cache.put(pair.access_token, principal, generation)
    return principal


@router.post("/login", response_model=LoginOut,
             summary="Log in with a signature of the challenge by the login key")
async def login(body: PassphraseLoginIn, request: Request, service: Service,
                response: Response) -> Response | TokenPair:
    generation = request.app.state.principal_cache.generation
    await rate_limit(request, response, "login", str(body.challenge_id))
    response.headers.update(no_store)
    pair, key_id = await service.login(body)
    principal = remember_new_session(request, pair, "normal", generation)
    if not body.unlock:
        return pair
    # The session is committed before its keys are asked for (a login whose commit failed
    # hands out nothing), and the kms is asked with the token the proxy would send for the
    # session's own request. Its answer goes out re-encoded as strict JSON, or null (a
    # slow, failing or odd kms: the device asks itself); the device checks it as it
    # checks that request's answer.
    await service.repo.session.commit()
    path = f"/v1/keys/me/unlock/{key_id}"
    bundle = (await request.app.state.proxy.get_for(principal, "kms", path,
                                                    request.state.request_id)
              if passes_gates(request.app.state.settings, principal, path) else None)
    answer = pair.model_dump_json().encode()
    return Response(answer[:-1] + b',"unlock":' + (bundle or b"null") + b"}",
                    media_type="application/json", headers=dict(response.headers))


@router.post("/recover", response_model=TokenPair,
             summary="Open a recovery session with a signature by the recovery key")
async def recover(body: LoginIn, request: Request, service: Service,
                  response: Response) -> TokenPair:
    generation = request.app.state.principal_cache.generation
    await rate_limit(request, response, "recover", str(body.challenge_id))
    response.headers.update(no_store)
    pair, _ = await service.login(body, recovery=True)
    remember_new_session(request, pair, "recovery", generation)
    return pair


@router.post("/refresh", response_model=TokenPair,
             summary="Rotate the refresh token; reusing an old one revokes the session")
async def refresh(body: RefreshIn, service: Service, response: Response) -> TokenPair:
    response.headers.update(no_store)
    return await service.refresh(body.refresh_token)


#: What a browser drops on logout (docs/web.md): its HTTP cache and cookies, always; the
#: origin's storage (the sealed device state: pins, invitation bindings, rollback marks; the
#: service worker and its shell) only when the user asks to forget this device. The device
#: state is sealed under the identity, useless without the passphrase: wiping it at every
#: logout would make the browser re-learn pins on first use, which is what a malicious
#: server wants. Only on a successful logout: the bearer token (never a cookie) is what
#: keeps another site from wiping a browser's state with a forged request.
CLEAR_ON_LOGOUT = '"cache", "cookies"'
CLEAR_ON_FORGET = '"cache", "cookies", "storage"'


@router.post("/logout", status_code=204, summary="End the current session", responses={
    204: {"description": "Session ended", "headers": {"Clear-Site-Data": {
        "description": f"`{CLEAR_ON_LOGOUT}`, or `{CLEAR_ON_FORGET}` with `forget_device`",
        "schema": {"type": "string"}}}}})
async def logout(auth: Current, service: Service, forget_device: Annotated[bool, Query(
        description="Also clear this origin's storage in the browser (the sealed device "
                    "state, the service worker): a shared computer")] = False) -> Response:
    await service.logout(auth)
    clear = CLEAR_ON_FORGET if forget_device else CLEAR_ON_LOGOUT
    return Response(status_code=204, headers={"Clear-Site-Data": clear})


@router.get("/me", response_model=MeOut, summary="Who is logged in")
async def me(auth: Current) -> MeOut:
    return MeOut(account=account_out(auth.account), session_id=auth.session.id,
                 session_kind=auth.session.kind,
                 second_factor_verified=auth.session.second_factor_verified)


@router.get("/audit", summary="One's own account history (logins, changes), hash-chained")
async def account_audit(auth: CurrentNormal, service: Service, request: Request,
                        response: Response) -> dict[str, Any]:
    response.headers.update(no_store)
    return await service.audit_trail(auth, request.app.state.audit_key)


@router.get("/sessions", response_model=list[SessionOut], summary="List one's live sessions")
async def sessions(auth: CurrentNormal, service: Service) -> list[SessionOut]:
    return await service.sessions(auth)


@router.delete("/sessions/{session_id}", status_code=204,
               summary="End one's current session; another one answers 403 step-up-required")
async def revoke_session(session_id: uuid.UUID, auth: CurrentNormal, service: Service) -> Response:
    await service.revoke_session(auth, session_id)
    return Response(status_code=204)


@router.post("/sessions/{session_id}/revoke", status_code=204,
             summary="Revoke any of one's sessions, with a step-up: a fresh 'sessions' "
                     "challenge signed by the login key, and the second factor when enrolled")
async def revoke_session_stepped_up(session_id: uuid.UUID, body: StepUpIn, request: Request,
                                    auth: CurrentNormal, service: Service) -> Response:
    await rate_limit(request, None, "step-up", str(auth.account.id))
    await service.revoke_session(auth, session_id, body)
    return Response(status_code=204)


@router.post("/2fa/totp", response_model=TotpEnrolmentOut,
             summary="Start TOTP enrolment: secret, otpauth URI and QR code")
async def enrol_totp(request: Request, auth: CurrentNormal, service: Service,
                     response: Response) -> TotpEnrolmentOut:
    await rate_limit(request, response, "2fa", str(auth.account.id))
    secret, uri = await service.enrol_totp(auth)
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage)
    buffer = io.BytesIO()
    image.save(buffer)
    response.headers.update(no_store)
    return TotpEnrolmentOut(secret=secret, otpauth_uri=uri, qr_svg=buffer.getvalue().decode())


@router.post("/2fa/totp/confirm", response_model=RecoveryCodesOut,
             summary="Confirm TOTP with a first code; returns ten one-time recovery codes")
async def confirm_totp(body: TotpConfirmIn, request: Request, auth: CurrentNormal,
                       service: Service, response: Response) -> RecoveryCodesOut:
    await rate_limit(request, response, "2fa", str(auth.account.id))
    response.headers.update(no_store)
    return RecoveryCodesOut(recovery_codes=await service.confirm_totp(auth, body.code))


@router.post("/passphrase", status_code=204,
             summary="Switch to a new login key and KDF salt; revokes the other sessions")
async def change_passphrase(body: PassphraseChangeIn, request: Request, auth: Current,
                            service: Service) -> Response:
    await rate_limit(request, None, "passphrase", str(auth.account.id))
    await service.change_passphrase(auth, body)
    return Response(status_code=204)


@router.post("/identity", response_model=DirectoryEntryOut,
             summary="Replace one's identity: a key-change statement signed by the current "
                     "identity, a fresh 'identity' challenge signed by the login key, and the "
                     "second factor when enrolled; revokes the other sessions")
async def change_identity(body: IdentityChangeIn, request: Request, auth: CurrentNormal,
                          service: Service, response: Response) -> DirectoryEntryOut:
    await rate_limit(request, response, "identity", str(auth.account.id))
    response.headers.update(no_store)
    return await service.change_identity(auth, body)
