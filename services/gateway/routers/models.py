"""The model registry: every version with its metadata; load, promote and roll back (administrators)."""
import json
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from fer.v1 import common_pb2, inference_pb2
from services.gateway.deps import AdminUser, CurrentUser, ModelsStub
from services.gateway.openapi import errors
from services.gateway.schemas import from_message

router = APIRouter(prefix="/models", tags=["models"])
# A version number as the registry stores it (int64 on the wire): a larger one is a 422, not a failed call.
VersionNumber = Annotated[int, Path(ge=1, le=2**63 - 1)]


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
        return from_message(cls, version, metadata=metadata)


class ModelList(BaseModel):
    models: list[ModelVersionOut]


@router.get("", response_model=ModelList)
async def list_models(user: CurrentUser, models: ModelsStub) -> ModelList:
    listed = await models.ListModels(common_pb2.Empty())
    return ModelList(models=[ModelVersionOut.from_proto(v) for v in listed.versions])


@router.post("/{name}/versions/{version:int}:promote", response_model=ModelVersionOut, responses=errors(400, 404))
async def promote_version(name: str, version: VersionNumber, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Loads the version (if needed) and makes it the one that answers by default."""
    return ModelVersionOut.from_proto(await models.PromoteModel(inference_pb2.ModelVersionRequest(name=name, version=version)))


@router.post("/{name}/versions/{version:int}:load", response_model=ModelVersionOut, responses=errors(400, 404))
async def load_version(name: str, version: VersionNumber, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Serves a version beside the promoted one (ask for it by number), e.g. to compare before promoting."""
    return ModelVersionOut.from_proto(await models.LoadModel(inference_pb2.ModelVersionRequest(name=name, version=version)))


@router.post("/{name}:rollback", response_model=ModelVersionOut, responses=errors(400, 404))
async def rollback(name: str, admin: AdminUser, models: ModelsStub) -> ModelVersionOut:
    """Serves the previously promoted version again."""
    return ModelVersionOut.from_proto(await models.RollbackModel(inference_pb2.RollbackModelRequest(name=name)))
