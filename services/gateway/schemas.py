"""Request and response bodies of the REST API. Requests forbid unknown fields (a typo is a 422, not ignored)."""
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from fer.v1 import auth_pb2


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(StrictBody):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    display_name: str = Field(max_length=200)


class RefreshIn(StrictBody):
    refresh_token: str = Field(max_length=512)


class UserPatch(StrictBody):
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    new_password: str | None = Field(default=None, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str
    computations: int = Field(description="How many analyses this account has run.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_proto(cls, user: auth_pb2.User) -> "UserOut":
        return cls(
            id=user.id,
            email=user.email,
            display_name=user.display_name,
            role="admin" if user.role == auth_pb2.ROLE_ADMIN else "user",
            computations=user.computations,
            created_at=user.created_at.ToDatetime(timezone.utc),
            updated_at=user.updated_at.ToDatetime(timezone.utc),
        )


def token_out(pair: auth_pb2.TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type or "bearer",
        expires_in=pair.expires_in,
    )
