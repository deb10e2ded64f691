"""What several routers' schemas share; each router keeps its own request and response models.

Here: the strict base of request bodies, the account (answered by /auth/register and /users/me), the page
of a list, the progress of background work (batches, videos), and the copy of a proto message into a
response model."""
from datetime import datetime, timezone
from typing import Generic, Self, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from fer.v1 import auth_pb2, common_pb2

Model = TypeVar("Model", bound=BaseModel)


class StrictBody(BaseModel):
    """Request bodies forbid unknown fields: a typo is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def from_message(model: type[Model], message: Message, /, **overrides) -> Model:
    """`model` with each field taken from the message's field of the same name (timestamps as UTC
    datetimes), except those given in `overrides`."""
    values = {}
    for name in model.model_fields.keys() - overrides.keys():
        value = getattr(message, name)
        values[name] = value.ToDatetime(timezone.utc) if isinstance(value, Timestamp) else value
    return model(**values, **overrides)


class Page(BaseModel, Generic[Model]):
    items: list[Model]
    next_page_token: str = Field(description="Pass as page_token for the next page; empty on the last page.")
    total: int

    @classmethod
    def of(cls, items: list[Model], page: common_pb2.PageInfo) -> Self:
        return cls(items=items, next_page_token=page.next_page_token, total=page.total)


class Progress(BaseModel):
    """Of work done in the background: a batch's photos, a video's sampled frames."""

    done: int = Field(description="Finished so far (a batch's photos: analysed or failed).")
    total: int


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
        return from_message(cls, user, role="admin" if user.role == auth_pb2.ROLE_ADMIN else "user")
