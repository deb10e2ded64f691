"""Registration, the OAuth2 password flow, token refresh and logout."""
from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from fer.v1 import auth_pb2
from services.gateway.schemas import RefreshIn, RegisterIn, TokenOut, UserOut, token_out

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/register", status_code=201, response_model=UserOut)
async def register(body: RegisterIn, request: Request) -> UserOut:
    user = await request.app.state.upstreams.auth.Register(
        auth_pb2.RegisterRequest(email=body.email, password=body.password, display_name=body.display_name)
    )
    return UserOut.from_proto(user)


@router.post("/token", response_model=TokenOut)
async def token(request: Request, form: OAuth2PasswordRequestForm = Depends()) -> TokenOut:
    """OAuth2 password flow: `username` is the email."""
    pair = await request.app.state.upstreams.auth.Authenticate(
        auth_pb2.AuthenticateRequest(
            email=form.username, password=form.password, client_address=request.client.host if request.client else ""
        )
    )
    return token_out(pair)


@router.post("/refresh", response_model=TokenOut)
async def refresh(body: RefreshIn, request: Request) -> TokenOut:
    """Exchanges a refresh token for a new pair; the old refresh token stops working."""
    return token_out(await request.app.state.upstreams.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=body.refresh_token)))


@router.post("/logout", status_code=204)
async def logout(body: RefreshIn, request: Request) -> Response:
    """Revokes the refresh token and every token rotated from the same login."""
    await request.app.state.upstreams.auth.Revoke(auth_pb2.RevokeRequest(refresh_token=body.refresh_token))
    return Response(status_code=204)
