"""Bearer tokens, verified locally with the auth service's published key (deps.py turns one into the caller's account)."""
import asyncio
import base64
import json
import time
from collections.abc import Callable
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

    def knows(self, kid: str) -> bool:
        return any(key.kid == kid for key in self.key_set.keys)


class TokenVerifier:
    """Caches the JWKS. A token naming a key it does not know has it fetched again (key rotation), but at
    most once per `refetch_interval_s`: inside that window such a token is refused at once, so a stream of
    forged key ids costs one fetch per window, and a rotated key is known within one window."""

    def __init__(self, auth_stub, refetch_interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.auth_stub = auth_stub
        self.refetch_interval_s = refetch_interval_s
        self._clock = clock
        self._keys: _Keys | None = None
        self._fetched_at = 0.0
        # Concurrent requests with unknown keys wait for one fetch instead of each making their own.
        self._lock = asyncio.Lock()

    async def _refresh(self) -> _Keys:
        async with self._lock:
            if self._keys is not None and self._clock() - self._fetched_at < self.refetch_interval_s:
                return self._keys
            return await self._load()

    async def _load(self) -> _Keys:
        published = await self.auth_stub.GetVerificationKey(common_pb2.Empty())
        self._fetched_at = self._clock()
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
        keys = self._keys or await self._refresh()
        kid = _unverified_kid(token)
        if kid is not None and not keys.knows(kid):
            keys = await self._refresh()
            if not keys.knows(kid):
                raise unauthorized("invalid access token: it is signed with an unknown key")
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
