"""PredictFrames against the real bundled Triton: the frames of a clip the test makes (the
astronaut's head crossing a grey picture), each face where the clip put it, the same answer PredictImage gives frame by frame, and the faces of many
frames reaching Triton as one request."""
import asyncio
import io

import grpc
import numpy as np
import pytest
from PIL import Image

from fer.v1 import inference_pb2
from services.inference.inference_servicer import MAX_FRAMES
from services.inference.tests.helpers import iou
from services.inference.tests.helpers import triton_counters
from tests.fixtures.triton import MODEL_NAME
from tests.fixtures.videos import frames as clip_frames


def jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()


def grey_jpeg(size=(480, 320)) -> bytes:
    return jpeg(np.full((size[1], size[0], 3), 128, dtype=np.uint8))


@pytest.fixture(scope="module")
def clip() -> list[tuple[bytes, tuple[int, int, int, int]]]:
    """32 JPEG frames (480x320) of the head crossing the picture, each with where her face truly is."""
    return [(jpeg(rgb), box) for _, rgb, box in clip_frames(4.0, 8, (480, 320))]


def box_of(face) -> tuple[int, int, int, int]:
    return face.box.x, face.box.y, face.box.width, face.box.height


async def test_each_frame_has_its_face_where_the_video_put_it(inference_stub, clip):
    picked = clip[::4]
    reply = await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=[data for data, _ in picked]))
    assert len(reply.frames) == len(picked)
    for index, ((_, expected), frame) in enumerate(zip(picked, reply.frames)):
        assert (frame.width, frame.height) == (480, 320)
        assert len(frame.faces) == 1, (index, frame.faces)
        assert iou(box_of(frame.faces[0]), expected) > 0.5, (index, box_of(frame.faces[0]), expected)
    assert reply.model.name == MODEL_NAME and len(reply.model.classes) == 7
    assert reply.timings.detect_ms > 0 and reply.timings.infer_ms > 0

    # Frame by frame through PredictImage: the same boxes and scores (one code path for both).
    for (data, _), frame in zip(picked[:3], reply.frames):
        single = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=data))
        assert [box_of(f) for f in single.faces] == [box_of(f) for f in frame.faces]
        np.testing.assert_allclose(single.faces[0].scores, frame.faces[0].scores, atol=1e-5)
        assert single.faces[0].label == frame.faces[0].label


async def test_a_frame_without_a_face_has_no_faces_and_keeps_its_place(inference_stub, clip):
    frames = [clip[0][0], grey_jpeg(), clip[16][0], grey_jpeg((320, 240))]
    reply = await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=frames))
    assert [len(f.faces) for f in reply.frames] == [1, 0, 1, 0]
    assert (reply.frames[3].width, reply.frames[3].height) == (320, 240)
    # The faces on either side of the empty frame are the ones of their own frames.
    assert reply.frames[0].faces[0].box.x < reply.frames[2].faces[0].box.x

    empty = await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=[grey_jpeg()]))
    assert [len(f.faces) for f in empty.frames] == [0]


async def test_too_many_no_or_bad_frames_are_invalid_argument(inference_stub, clip):
    face = clip[0][0]
    cases = {
        "at most 64 frames": [face] * (MAX_FRAMES + 1),
        "at least one frame": [],
        "frame 1:": [face, b"not a picture"],
    }
    for message, frames in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=frames))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert message in caught.value.details()


async def test_the_faces_of_32_frames_reach_triton_as_one_request(inference_stub, inference_service, triton, clip):
    """What makes a video fast: one face per frame, 32 frames, one Triton execution of batch 32."""
    assert len(clip) == 32
    version = inference_service.registry.promoted(MODEL_NAME)
    before = triton_counters(triton.metrics_url, MODEL_NAME, version)
    reply = await inference_stub.PredictFrames(inference_pb2.PredictFramesRequest(frames=[data for data, _ in clip]))
    # Triton may publish its counters a moment after it answered.
    for _ in range(20):
        after = triton_counters(triton.metrics_url, MODEL_NAME, version)
        if after["nv_inference_count"] - before["nv_inference_count"] >= 32:
            break
        await asyncio.sleep(0.1)
    assert sum(len(f.faces) for f in reply.frames) == 32
    assert after["nv_inference_count"] - before["nv_inference_count"] == 32
    assert after["nv_inference_request_success"] - before["nv_inference_request_success"] == 1
    assert after["nv_inference_exec_count"] - before["nv_inference_exec_count"] == 1
