"""Bearer tokens: verified locally with the auth service's published key, then the account is looked up."""
import json
import logging
from dataclasses import dataclass

import grpc
from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fer.v1 import auth_pb2, common_pb2

log = logging.getLogger(__name__)
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


@dataclass
class _Keys:
    key_set: KeySet
    claims: jwt.JWTClaimsRegistry
    algorithm: str


class TokenVerifier:
    """Caches the JWKS; fetches it again once when a token names a key it does not know (key rotation)."""

    def __init__(self, auth_stub) -> None:
        self.auth_stub = auth_stub
        self._keys: _Keys | None = None

    async def _load(self) -> _Keys:
        published = await self.auth_stub.GetVerificationKey(common_pb2.Empty())
        self._keys = _Keys(
            key_set=KeySet.import_key_set(json.loads(published.jwks_json)),
            claims=jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": published.issuer},
                aud={"essential": True, "value": published.audience},
                sub={"essential": True},
                exp={"essential": True},
            ),
            algorithm=published.algorithm,
        )
        return self._keys

    async def verify(self, token: str) -> dict:
        keys = self._keys or await self._load()
        kid = _unverified_kid(token)
        if kid is not None and all(key.kid != kid for key in keys.key_set.keys):
            keys = await self._load()
        try:
            # Only the published algorithm is accepted: "none" and HS256-with-the-public-key tricks fail here.
            decoded = jwt.decode(token, keys.key_set, algorithms=[keys.algorithm])
            keys.claims.validate(decoded.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise _unauthorized(f"invalid access token: {getattr(exc, 'description', None) or exc}") from None
        return decoded.claims


def _unverified_kid(token: str) -> str | None:
    import base64

    try:
        header = token.split(".", 1)[0]
        return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


async def current_user(request: Request, token: str | None = Depends(oauth2_scheme)) -> auth_pb2.User:
    """The caller's account; 401 for a missing, bad or expired token, or an account that no longer exists."""
    if not token:
        raise _unauthorized("not authenticated: send 'Authorization: Bearer <access token>'")
    state = request.app.state
    claims = await state.token_verifier.verify(token)
    try:
        return await state.upstreams.auth.GetUser(auth_pb2.GetUserRequest(user_id=str(claims["sub"])))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise _unauthorized("the account of this token no longer exists") from None
        raise


async def admin_user(user: auth_pb2.User = Depends(current_user)) -> auth_pb2.User:
    if user.role != auth_pb2.ROLE_ADMIN:
        raise HTTPException(status_code=403, detail="this needs an administrator")
    return user
