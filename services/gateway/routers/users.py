"""The caller's own account."""
import logging

import grpc
from fastapi import APIRouter, HTTPException, Response
from pydantic import Field

from fer.v1 import auth_pb2, reports_pb2
from services.gateway.deps import AccessClaims, AuthStub, ClientAddress, CurrentUser, UpstreamsDep
from services.gateway.openapi import errors
from services.gateway.schemas import StrictBody, UserOut

log = logging.getLogger(__name__)
router = APIRouter(prefix="/users", tags=["users"])


class UserPatch(StrictBody):
    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    new_password: str | None = Field(default=None, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


@router.get("/me", response_model=UserOut)
async def read_me(user: CurrentUser) -> UserOut:
    return UserOut.from_proto(user)


@router.patch("/me", response_model=UserOut, responses=errors(403, 409, 429))
async def update_me(
    body: UserPatch, user: CurrentUser, claims: AccessClaims, address: ClientAddress, auth: AuthStub
) -> UserOut:
    """Changing the email or the password needs current_password (403 when wrong; its checks count as
    failed logins, 429 past the limits). A new password ends every other session of the account at once."""
    if (body.new_password is not None or body.email is not None) and not body.current_password:
        raise HTTPException(status_code=422, detail="current_password is required to change the email or the password")
    changes = body.model_dump(exclude_none=True, exclude={"current_password"})
    if not changes:
        raise HTTPException(status_code=422, detail="nothing to change: send display_name, email or new_password")
    updated = await auth.UpdateUser(
        auth_pb2.UpdateUserRequest(
            user_id=user.id,
            current_password=body.current_password or "",
            session_id=claims["sid"],
            client_address=address,
            **changes,
        )
    )
    return UserOut.from_proto(updated)


@router.delete("/me", status_code=204, responses=errors(404))
async def delete_me(user: CurrentUser, auth: AuthStub, upstreams: UpstreamsDep) -> Response:
    """Deletes the caller's account. The account ends at once: its tokens and sessions stop working. Its
    photos, results (with their annotated images) and reports are erased now, or within a minute if the
    reports service is down at that moment; the answer is 204 either way."""
    await auth.DeleteUser(auth_pb2.GetUserRequest(user_id=user.id))
    if upstreams.reports is not None:
        try:
            await upstreams.reports.EraseOwner(reports_pb2.EraseOwnerRequest(owner_id=user.id))
        except grpc.aio.AioRpcError as exc:
            # Auth keeps the account's tombstone: the reports service's eraser erases it on its next pass.
            log.warning("account %s deleted; the reports service (%s) will erase its data on its next pass", user.id, exc.code().name)
    return Response(status_code=204)
