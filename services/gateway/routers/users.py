"""The caller's own account."""
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from fer.v1 import auth_pb2
from services.gateway.schemas import UserOut, UserPatch
from services.gateway.security import current_user

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserOut)
async def read_me(user: auth_pb2.User = Depends(current_user)) -> UserOut:
    return UserOut.from_proto(user)


@router.patch("/me", response_model=UserOut)
async def update_me(body: UserPatch, request: Request, user: auth_pb2.User = Depends(current_user)) -> UserOut:
    if body.new_password is not None and not body.current_password:
        raise HTTPException(status_code=422, detail="current_password is required to change the password")
    changes = body.model_dump(exclude_none=True, exclude={"current_password"})
    if not changes:
        raise HTTPException(status_code=422, detail="nothing to change: send display_name, email or new_password")
    updated = await request.app.state.upstreams.auth.UpdateUser(
        auth_pb2.UpdateUserRequest(user_id=user.id, current_password=body.current_password or "", **changes)
    )
    return UserOut.from_proto(updated)


@router.delete("/me", status_code=204)
async def delete_me(request: Request, user: auth_pb2.User = Depends(current_user)) -> Response:
    await request.app.state.upstreams.auth.DeleteUser(auth_pb2.GetUserRequest(user_id=user.id))
    return Response(status_code=204)
