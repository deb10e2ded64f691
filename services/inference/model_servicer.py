"""The ModelService gRPC servicer: the model registry's versions, listed, loaded, promoted, rolled back."""
from __future__ import annotations

import logging

from fer.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from services.inference.errors import guarded
from services.inference.registry import ModelRegistry, UnknownModel, Version

log = logging.getLogger(__name__)

# Triton's model states, as the API names them; a version Triton does not list is "available".
TRITON_STATES = {"READY": "ready", "LOADING": "loading", "UNLOADING": "unavailable", "UNAVAILABLE": "unavailable"}


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
