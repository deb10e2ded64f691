"""Typed dependencies, declared once: routes ask for the caller, the settings and the upstream stubs by type.

This is the one module that reads app.state (which create_app and its lifespan fill)."""
from collections.abc import Callable
from typing import Annotated, Any

import grpc
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

from fer.v1 import auth_pb2, auth_pb2_grpc, inference_pb2_grpc, reports_pb2_grpc
from services.gateway.config import Settings
from services.gateway.security import TokenVerifier, unauthorized
from services.gateway.upstreams import Upstreams

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_upstreams(request: Request) -> Upstreams:
    return request.app.state.upstreams


def get_token_verifier(request: Request) -> TokenVerifier:
    return request.app.state.token_verifier


def client_address(request: Request) -> str:
    """The caller's address, as the trusted-proxy handling resolved it (auth's limits count by it)."""
    return request.client.host if request.client else ""


SettingsDep = Annotated[Settings, Depends(get_settings)]
UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
TokenVerifierDep = Annotated[TokenVerifier, Depends(get_token_verifier)]
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]
ClientAddress = Annotated[str, Depends(client_address)]


def _stub(name: str) -> Callable[[Upstreams], Any]:
    """The dependency on one upstream's stub; 503 when this deployment has none."""

    def stub(upstreams: UpstreamsDep) -> Any:
        found = getattr(upstreams, name)
        if found is None:
            raise HTTPException(status_code=503, detail=f"the {name} service is not part of this deployment")
        return found

    stub.__name__ = f"{name}_stub"
    return stub


AuthStub = Annotated[auth_pb2_grpc.AuthServiceStub, Depends(_stub("auth"))]
InferenceStub = Annotated[inference_pb2_grpc.InferenceServiceStub, Depends(_stub("inference"))]
ModelsStub = Annotated[inference_pb2_grpc.ModelServiceStub, Depends(_stub("models"))]
TrainingStub = Annotated[inference_pb2_grpc.TrainingServiceStub, Depends(_stub("training"))]
ReportsStub = Annotated[reports_pb2_grpc.ReportsServiceStub, Depends(_stub("reports"))]


async def access_claims(token: BearerToken, verifier: TokenVerifierDep) -> dict:
    """The claims of the caller's access token; 401 for a missing, bad or expired token, or one that names
    no session (`sid`)."""
    if not token:
        raise unauthorized("not authenticated: send 'Authorization: Bearer <access token>'")
    claims = await verifier.verify(token)
    if not isinstance(claims.get("sid"), str) or not claims["sid"]:
        raise unauthorized("this access token names no session; please log in again")
    return claims


AccessClaims = Annotated[dict, Depends(access_claims)]


async def current_user(claims: AccessClaims, auth: AuthStub) -> auth_pb2.User:
    """The caller's account, asked of auth on every request: 401 once the account is gone or the token's
    session has ended (logout, a new password, a reused refresh token), not when the token expires."""
    try:
        return await auth.GetUser(auth_pb2.GetUserRequest(user_id=str(claims["sub"]), session_id=claims["sid"]))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise unauthorized("the account of this token no longer exists") from None
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise unauthorized(exc.details()) from None
        raise


CurrentUser = Annotated[auth_pb2.User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> auth_pb2.User:
    if user.role != auth_pb2.ROLE_ADMIN:
        raise HTTPException(status_code=403, detail="this needs an administrator")
    return user


AdminUser = Annotated[auth_pb2.User, Depends(admin_user)]
