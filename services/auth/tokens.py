"""Access tokens (ES256 JWTs the gateway verifies locally) and opaque refresh tokens (stored hashed)."""
import hashlib
import json
import secrets
import time
import uuid

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

ALGORITHM = "ES256"


def load_signing_key(pem: str) -> ECKey:
    key = ECKey.import_key(pem) if pem.strip() else ECKey.generate_key("P-256")
    key.ensure_kid()  # RFC 7638 thumbprint: the gateway picks the key by kid
    return key


class AccessTokenIssuer:
    def __init__(self, key: ECKey, issuer: str, audience: str, ttl_s: int) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    def issue(self, user_id: str, role: str, session_id: str) -> str:
        """`sid` names the session (the refresh-token family): the gateway has auth check it is still open."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "role": role,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode({"alg": ALGORITHM, "kid": self.key.kid, "typ": "at+jwt"}, claims, self.key)

    def jwks_json(self) -> str:
        return json.dumps(KeySet([self.key]).as_dict(private=False))


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
