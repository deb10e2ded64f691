"""The model registry: every version with its metadata; load, promote and roll back (administrators)."""
import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from fer.v1 import auth_pb2, common_pb2, inference_pb2
from services.gateway.security import admin_user, current_user
from services.gateway.upstreams import upstream

router = APIRouter(prefix="/models", tags=["models"])


class ModelVersionOut(BaseModel):
    name: str
    version: int
    state: str = Field(description="available (on disk), loading, ready (served by Triton) or unavailable.")
    promoted: bool = Field(description="Whether this version answers predictions by default.")
    metadata: dict[str, Any] = Field(description="The version's metadata.json: classes, input, metrics, training config.")

    @classmethod
    def from_proto(cls, version: inference_pb2.ModelVersion) -> "ModelVersionOut":
        try:
            metadata = json.loads(version.metadata_json) if version.metadata_json else {}
        except json.JSONDecodeError:
            metadata = {}
        return cls(name=version.name, version=version.version, state=version.state, promoted=version.promoted, metadata=metadata)


class ModelList(BaseModel):
    models: list[ModelVersionOut]


@router.get("", response_model=ModelList)
async def list_models(request: Request, user: auth_pb2.User = Depends(current_user)) -> ModelList:
    listed = await upstream(request, "inference").ListModels(common_pb2.Empty())
    return ModelList(models=[ModelVersionOut.from_proto(v) for v in listed.versions])


@router.post("/{name}/versions/{version:int}:promote", response_model=ModelVersionOut, responses={403: {}, 404: {}})
async def promote_version(name: str, version: int, request: Request, user: auth_pb2.User = Depends(admin_user)) -> ModelVersionOut:
    """Loads the version (if needed) and makes it the one that answers by default."""
    promoted = await upstream(request, "inference").PromoteModel(inference_pb2.ModelVersionRequest(name=name, version=version))
    return ModelVersionOut.from_proto(promoted)


@router.post("/{name}/versions/{version:int}:load", response_model=ModelVersionOut, responses={403: {}, 404: {}})
async def load_version(name: str, version: int, request: Request, user: auth_pb2.User = Depends(admin_user)) -> ModelVersionOut:
    """Serves a version beside the promoted one (ask for it by number), e.g. to compare before promoting."""
    loaded = await upstream(request, "inference").LoadModel(inference_pb2.ModelVersionRequest(name=name, version=version))
    return ModelVersionOut.from_proto(loaded)


@router.post("/{name}:rollback", response_model=ModelVersionOut, responses={403: {}, 404: {}})
async def rollback(name: str, request: Request, user: auth_pb2.User = Depends(admin_user)) -> ModelVersionOut:
    """Serves the previously promoted version again."""
    version = await upstream(request, "inference").RollbackModel(inference_pb2.RollbackModelRequest(name=name))
    return ModelVersionOut.from_proto(version)
