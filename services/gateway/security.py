"""Bearer tokens, verified locally with the auth service's published key (deps.py turns one into the caller's account)."""
import base64
import json
from dataclasses import dataclass

from fastapi import HTTPException
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fer.v1 import common_pb2


def unauthorized(detail: str) -> HTTPException:
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
            raise unauthorized(f"invalid access token: {getattr(exc, 'description', None) or exc}") from None
        return decoded.claims


def _unverified_kid(token: str) -> str | None:
    try:
        header = token.split(".", 1)[0]
        return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
