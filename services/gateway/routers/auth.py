"""Registration, the OAuth2 password flow, token refresh and logout."""
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from fer.v1 import auth_pb2
from services.gateway.deps import AuthStub, ClientAddress
from services.gateway.openapi import errors
from services.gateway.schemas import StrictBody, UserOut, from_message

router = APIRouter(prefix="/auth", tags=["auth"])


class RegisterIn(StrictBody):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    display_name: str = Field(max_length=200)


class RefreshIn(StrictBody):
    refresh_token: str = Field(max_length=512)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int

    @classmethod
    def from_proto(cls, pair: auth_pb2.TokenPair) -> "TokenOut":
        return from_message(cls, pair, token_type=pair.token_type or "bearer")


@router.post("/register", status_code=201, response_model=UserOut, responses=errors(409, 429))
async def register(body: RegisterIn, address: ClientAddress, auth: AuthStub) -> UserOut:
    """Limited per client address (429 with Retry-After past it); the password rule is in docs/security.md."""
    user = await auth.Register(
        auth_pb2.RegisterRequest(
            email=body.email,
            password=body.password,
            display_name=body.display_name,
            client_address=address,
        )
    )
    return UserOut.from_proto(user)


@router.post("/token", response_model=TokenOut, responses=errors(401, 403, 429))
async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], address: ClientAddress, auth: AuthStub) -> TokenOut:
    """OAuth2 password flow: `username` is the email. Failed logins are limited (429 with Retry-After). The
    right password of an account an administrator disabled is a 403 that says so."""
    pair = await auth.Authenticate(auth_pb2.AuthenticateRequest(email=form.username, password=form.password, client_address=address))
    return TokenOut.from_proto(pair)


@router.post("/refresh", response_model=TokenOut, responses=errors(401))
async def refresh(body: RefreshIn, auth: AuthStub) -> TokenOut:
    """Exchanges a refresh token for a new pair; the old refresh token stops working."""
    return TokenOut.from_proto(await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=body.refresh_token)))


@router.post("/logout", status_code=204, responses=errors(401))
async def logout(body: RefreshIn, auth: AuthStub) -> Response:
    """Ends the refresh token's session: its refresh tokens and, at once, its access tokens stop working."""
    await auth.Revoke(auth_pb2.RevokeRequest(refresh_token=body.refresh_token))
    return Response(status_code=204)
