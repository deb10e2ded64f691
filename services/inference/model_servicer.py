"""The ModelService gRPC servicer: the model registry's versions, listed, loaded, promoted, rolled back, and
the files each version publishes."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc

from fer.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services.inference.errors import guarded
from services.inference.registry import ModelRegistry, UnknownModel, Version

log = logging.getLogger(__name__)

# Triton's model states, as the API names them; a version Triton does not list is "available".
TRITON_STATES = {"READY": "ready", "LOADING": "loading", "UNLOADING": "unavailable", "UNAVAILABLE": "unavailable"}
# The files of a version GetModelFile serves (what training's evaluate and export write), with their types.
# Only these names are ever joined to a path, and only under a model and version the registry lists.
MODEL_FILES = {
    "confusion_matrix.png": "image/png",
    "report.md": "text/markdown; charset=utf-8",
    "MODEL_CARD.md": "text/markdown; charset=utf-8",
}
# Under gRPC's default 4 MiB message (a confusion matrix is ~85 KB, a report a few KB).
MODEL_FILE_MAX_BYTES = 3 * 1024 * 1024


class ModelServicer(inference_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def _version_proto(self, version: Version, states: dict[tuple[str, int], str]) -> inference_pb2.ModelVersion:
        return inference_pb2.ModelVersion(
            name=version.name,
            version=version.version,
            state=TRITON_STATES.get(states.get((version.name, version.version), ""), "available"),
            promoted=self.registry.promoted(version.name) == version.version,
            metadata_json=version.metadata_json,
        )

    async def _answer(self, version: Version) -> inference_pb2.ModelVersion:
        return self._version_proto(version, await self.registry.states())

    @guarded
    async def ListModels(self, request: common_pb2.Empty, context) -> inference_pb2.ListModelsResponse:
        states = await self.registry.states()
        out = []
        for name in self.registry.models():
            for number in self.registry.versions(name):
                try:
                    version = self.registry.version(name, number)
                except UnknownModel as exc:
                    log.warning("%s", exc)
                    continue
                out.append(self._version_proto(version, states))
        return inference_pb2.ListModelsResponse(versions=out)

    @guarded
    async def LoadModel(self, request: inference_pb2.ModelVersionRequest, context) -> inference_pb2.ModelVersion:
        return await self._answer(await self.registry.load(request.name, request.version))

    @guarded
    async def PromoteModel(self, request: inference_pb2.ModelVersionRequest, context) -> inference_pb2.ModelVersion:
        return await self._answer(await self.registry.promote(request.name, request.version))

    @guarded
    async def RollbackModel(self, request: inference_pb2.RollbackModelRequest, context) -> inference_pb2.ModelVersion:
        return await self._answer(await self.registry.rollback(request.name))

    @guarded
    async def GetModelFile(self, request: inference_pb2.ModelFileRequest, context) -> inference_pb2.ModelFile:
        if request.file not in MODEL_FILES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"file must be one of {', '.join(MODEL_FILES)}")
        # Only a model and version the registry lists, and a name from MODEL_FILES, ever make up the path.
        if request.name not in self.registry.models() or request.version not in self.registry.versions(request.name):
            raise UnknownModel(f"model {request.name!r} has no version {request.version}")
        path = self.registry.repository / request.name / str(request.version) / request.file
        try:
            content = await asyncio.to_thread(_read_small, path)
        except FileNotFoundError:
            raise UnknownModel(f"model {request.name!r} version {request.version} has no {request.file}") from None
        return inference_pb2.ModelFile(content=content, content_type=MODEL_FILES[request.file])


def _read_small(path: Path) -> bytes:
    """The file's bytes; a regular file only, and one that fits in a message."""
    if not path.is_file():
        raise FileNotFoundError(path)
    if path.stat().st_size > MODEL_FILE_MAX_BYTES:
        raise OSError(f"{path} is larger than {MODEL_FILE_MAX_BYTES} bytes")
    return path.read_bytes()
