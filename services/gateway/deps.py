"""Typed dependencies, declared once: routes ask for the caller, the settings and the upstream stubs by type.

This is the one module that reads app.state (which create_app and its lifespan fill)."""
from collections.abc import Callable
from typing import Annotated, Any

import grpc
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.requests import HTTPConnection

from fer.v1 import auth_pb2, auth_pb2_grpc, inference_pb2_grpc, reports_pb2_grpc
from services.gateway.config import Settings
from services.gateway.security import TokenVerifier, unauthorized
from services.gateway.upstreams import Upstreams

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


# An HTTPConnection, not a Request: the WebSocket routes ask for these too.
def get_settings(connection: HTTPConnection) -> Settings:
    return connection.app.state.settings


def get_upstreams(connection: HTTPConnection) -> Upstreams:
    return connection.app.state.upstreams


def get_token_verifier(connection: HTTPConnection) -> TokenVerifier:
    return connection.app.state.token_verifier


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


async def verified_claims(token: str | None, verifier: TokenVerifier) -> dict:
    """The claims of an access token; 401 for a missing, bad or expired token, or one that names no
    session (`sid`). HTTP requests (below) and the live WebSocket's first message both pass here."""
    if not token:
        raise unauthorized("not authenticated: send 'Authorization: Bearer <access token>'")
    claims = await verifier.verify(token)
    if not isinstance(claims.get("sid"), str) or not claims["sid"]:
        raise unauthorized("this access token names no session; please log in again")
    return claims


async def account_of(claims: dict, auth: auth_pb2_grpc.AuthServiceStub) -> auth_pb2.User:
    """The account of verified claims, asked of auth every time: 401 once the account is gone or the
    token's session has ended (logout, a new password, a reused refresh token), not when the token expires."""
    try:
        return await auth.GetUser(auth_pb2.GetUserRequest(user_id=str(claims["sub"]), session_id=claims["sid"]))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise unauthorized("the account of this token no longer exists") from None
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise unauthorized(exc.details()) from None
        raise


async def access_claims(token: BearerToken, verifier: TokenVerifierDep) -> dict:
    """The claims of the caller's bearer token (see verified_claims)."""
    return await verified_claims(token, verifier)


AccessClaims = Annotated[dict, Depends(access_claims)]


async def current_user(claims: AccessClaims, auth: AuthStub) -> auth_pb2.User:
    """The caller's account (see account_of)."""
    return await account_of(claims, auth)


CurrentUser = Annotated[auth_pb2.User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> auth_pb2.User:
    if user.role != auth_pb2.ROLE_ADMIN:
        raise HTTPException(status_code=403, detail="this needs an administrator")
    return user


AdminUser = Annotated[auth_pb2.User, Depends(admin_user)]
