"""The gRPC services behind the gateway, one channel each for the life of the app."""
from dataclasses import dataclass, field

import grpc

from fer.v1 import auth_pb2_grpc, inference_pb2_grpc, reports_pb2_grpc
from ferkit.grpc_client import is_serving, open_channel
from services.gateway.config import Settings


@dataclass
class Upstreams:
    auth: auth_pb2_grpc.AuthServiceStub
    inference: inference_pb2_grpc.InferenceServiceStub | None
    models: inference_pb2_grpc.ModelServiceStub | None
    training: inference_pb2_grpc.TrainingServiceStub | None
    reports: reports_pb2_grpc.ReportsServiceStub | None
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @classmethod
    def connect(cls, settings: Settings) -> "Upstreams":
        channels = {
            name: open_channel(addr, timeout_s=settings.grpc_timeout_s)
            for name, addr in (
                ("auth", settings.auth_addr),
                ("inference", settings.inference_addr),
                ("reports", settings.reports_addr),
            )
            if addr
        }
        return cls(
            auth=auth_pb2_grpc.AuthServiceStub(channels["auth"]),
            inference=inference_pb2_grpc.InferenceServiceStub(channels["inference"]) if "inference" in channels else None,
            models=inference_pb2_grpc.ModelServiceStub(channels["inference"]) if "inference" in channels else None,
            training=inference_pb2_grpc.TrainingServiceStub(channels["inference"]) if "inference" in channels else None,
            reports=reports_pb2_grpc.ReportsServiceStub(channels["reports"]) if "reports" in channels else None,
            channels=channels,
        )

    async def readiness(self) -> dict[str, bool]:
        return {name: await is_serving(channel) for name, channel in self.channels.items()}

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
