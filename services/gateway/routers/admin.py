"""The administrators' console: every account, searched and paged; a role changed, an account disabled."""
from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from fer.v1 import auth_pb2, common_pb2
from services.gateway.deps import AdminUser, AuthStub
from services.gateway.openapi import errors
from services.gateway.responses import conflict_on_precondition
from services.gateway.schemas import Page, StrictBody, UserOut

router = APIRouter(prefix="/admin", tags=["admin"])
ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}


class AccountOut(UserOut):
    disabled: bool = Field(description="A disabled account cannot log in, and its tokens are refused.")


class AccountPatch(StrictBody):
    role: Literal["user", "admin"] | None = None
    disabled: bool | None = None


@router.get("/users", response_model=Page[AccountOut])
async def list_users(
    admin: AdminUser,
    auth: AuthStub,
    q: str = Query("", max_length=320, description="Part of an email or a display name, in any case."),
    page_size: int = Query(20, ge=1, le=100),
    page_token: str = Query("", max_length=512),
) -> Page[AccountOut]:
    """Every account, newest first; `q` keeps those whose email or display name contains it."""
    found = await auth.ListUsers(
        auth_pb2.ListUsersRequest(query=q, page=common_pb2.PageRequest(page_size=page_size, page_token=page_token))
    )
    return Page[AccountOut].of([AccountOut.from_proto(user) for user in found.users], found.page)


@router.patch("/users/{user_id}", response_model=AccountOut, responses=errors(404, 409))
async def update_user(user_id: str, body: AccountPatch, admin: AdminUser, auth: AuthStub) -> AccountOut:
    """Changes the role or disables (or enables) the account. Disabling ends its sessions at once: its
    tokens are refused from the next request, and it cannot log in until enabled again. 409 when the change
    would leave no administrator who is not disabled (the caller included)."""
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise HTTPException(status_code=422, detail="nothing to change: send role or disabled")
    request = auth_pb2.AdminUpdateUserRequest(user_id=user_id, admin_id=admin.id)
    if "role" in changes:
        request.role = ROLES[changes["role"]]
    if "disabled" in changes:
        request.disabled = changes["disabled"]
    # The last administrator: a conflict with the state of the accounts, 409.
    updated = await conflict_on_precondition(auth.AdminUpdateUser(request))
    return AccountOut.from_proto(updated)
