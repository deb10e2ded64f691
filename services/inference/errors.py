"""Domain errors → the gRPC status the gateway maps to HTTP, once for every servicer of the service."""
from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from ferkit import images
from services.inference.registry import NoModelDeployed, UnknownModel
from services.inference.training.launcher import JobNotFound, TrainingDisabled
from services.inference.training.spec import InvalidJob
from services.inference.triton import ModelNotServing, TritonError, TritonUnavailable

log = logging.getLogger(__name__)

Rpc = TypeVar("Rpc", bound=Callable[..., Awaitable[Any]])


def guarded(rpc: Rpc) -> Rpc:
    """An RPC method whose domain errors end the call with their status code; anything else is a bug,
    which the kit's interceptor logs and answers INTERNAL."""

    @functools.wraps(rpc)
    async def call(self, request, context: grpc.aio.ServicerContext):
        try:
            return await rpc(self, request, context)
        except (images.ImageError, InvalidJob) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (UnknownModel, JobNotFound) as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except TritonUnavailable as exc:
            log.warning("%s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the model server is unavailable; retry shortly")
        except NoModelDeployed as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no model is deployed yet; retry once one is")
        except (ModelNotServing, TrainingDisabled) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except TritonError as exc:
            log.error("%s", exc)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))

    return call  # type: ignore[return-value]
