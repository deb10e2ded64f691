"""The inference service against the real bundled Triton: answers equal the TorchScript model run
directly, Triton batches across requests, promote/rollback switch the serving version, a new version
is loadable without a restart, Triton down is UNAVAILABLE and the service recovers on its own."""
import asyncio
import io
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from fer.v1 import common_pb2, inference_pb2
from ferkit.vision import CLASSES, InputSpec, ModelMetadata, align_and_crop, normalise, resize_grey, softmax, to_grey, whole_face
from services.inference.tests.helpers import iou, triton_counters
from tests.fixtures.triton import MODEL_NAME, export_random_resnet18


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def torchscript_logits(repo: Path, version: int, faces: np.ndarray) -> np.ndarray:
    """The exported model.pt run directly on already-normalised faces."""
    model = torch.jit.load(str(repo / MODEL_NAME / str(version) / "model.pt"), map_location="cpu").eval()
    with torch.no_grad():
        return model(torch.from_numpy(faces)).numpy()


def torchscript_probs(repo: Path, version: int, faces: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(torchscript_logits(repo, version, faces)), dim=1).numpy()


def random_crops(count: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [png(rng.integers(0, 256, size=(64, 56), dtype=np.uint8)) for _ in range(count)]


def crops_input(crops: list[bytes]) -> np.ndarray:
    greys = [resize_grey(to_grey(Image.open(io.BytesIO(c))), InputSpec().size) for c in crops]
    return normalise(np.stack(greys), InputSpec())


async def test_astronaut_face_matches_torchscript(inference_stub, inference_service, model_repository):
    photo = skdata.astronaut()
    reply = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(photo)))
    assert len(reply.faces) == 1, reply.faces
    face = reply.faces[0]
    # The astronaut's face: RetinaFace puts it at about (177, 56, 95, 120) in the 512x512 photo.
    assert 150 < face.box.x < 210 and 30 < face.box.y < 90 and 70 < face.box.width < 130, face.box
    assert face.detection_score > 0.9
    assert (reply.image_width, reply.image_height) == (512, 512)
    assert list(reply.model.classes) == list(CLASSES) and reply.model.name == MODEL_NAME

    box = (face.box.x, face.box.y, face.box.width, face.box.height)
    # The same detection, with RetinaFace's landmarks: the face is turned upright before cropping.
    [detection] = await inference_service.detector.detect(photo)
    assert detection.box == box and len(detection.landmarks) == 5
    settings = inference_service.settings
    assert settings.align_faces
    crop = align_and_crop(to_grey(Image.fromarray(photo)), box, detection.landmarks, settings.face_margin, InputSpec().size)
    x = normalise(crop[None], InputSpec())
    expected = torchscript_probs(model_repository, reply.model.version, x)[0]
    assert face.label == CLASSES[int(np.argmax(expected))]
    np.testing.assert_allclose(np.array(face.scores), expected, atol=1e-4)
    assert reply.timings.detect_ms > 0 and reply.timings.infer_ms > 0 and reply.timings.total_ms >= reply.timings.infer_ms


async def test_a_large_photo_is_decoded_reduced_and_its_boxes_are_in_its_pixels(inference_stub, inference_service):
    """A 2048x2048 JPEG: decoded at detector_max_side (800) in draft mode, detected and cropped there,
    the box answered in the photo's own pixels (about 4x the 512x512 astronaut's)."""
    small = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(skdata.astronaut())))
    out = io.BytesIO()
    Image.fromarray(skdata.astronaut()).resize((2048, 2048), Image.Resampling.LANCZOS).save(out, "JPEG", quality=92)
    assert 512 < inference_service.settings.detector_max_side < 2048
    large = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=out.getvalue()))
    assert (large.image_width, large.image_height) == (2048, 2048)
    [face], [reference] = large.faces, small.faces
    got = (face.box.x, face.box.y, face.box.width, face.box.height)
    expected = tuple(4 * v for v in (reference.box.x, reference.box.y, reference.box.width, reference.box.height))
    # The detector sees 800 px instead of 512, so its box moves a little; a mapping error would be far off.
    assert iou(got, expected) > 0.85, (got, expected)
    assert face.label == reference.label
    np.testing.assert_allclose(face.scores, reference.scores, atol=0.08)


async def test_photo_without_face_is_an_empty_list_with_a_message(inference_stub):
    sky = np.zeros((240, 320, 3), dtype=np.uint8)
    sky[..., 2] = np.linspace(120, 255, 320, dtype=np.uint8)
    reply = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(sky)))
    assert list(reply.faces) == []
    assert "no face" in reply.message
    assert reply.model.version >= 1
    assert (reply.image_width, reply.image_height) == (320, 240)


async def test_bad_images_are_invalid_argument(inference_stub):
    good = png(skdata.astronaut())
    for bad in (b"", b"definitely not an image", good[: len(good) // 2]):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=bad))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()


async def test_crops_match_torchscript(inference_stub, model_repository):
    crops = random_crops(5)
    reply = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
    assert len(reply.faces) == 5
    expected = torchscript_probs(model_repository, reply.model.version, crops_input(crops))
    got = np.array([list(f.scores) for f in reply.faces])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert [f.label for f in reply.faces] == [CLASSES[i] for i in expected.argmax(axis=1)]
    assert (reply.faces[0].box.width, reply.faces[0].box.height) == (56, 64)


async def test_dynamic_batching_groups_requests_from_many_callers(inference_stub, inference_service, triton):
    version = inference_service.registry.promoted(MODEL_NAME)
    before = triton_counters(triton.metrics_url, MODEL_NAME, version)
    crops = random_crops(48, seed=1)
    # 48 callers at once, one face each: each is one Triton request.
    replies = await asyncio.gather(
        *(inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=[c])) for c in crops)
    )
    after = triton_counters(triton.metrics_url, MODEL_NAME, version)
    requests = after["nv_inference_request_success"] - before["nv_inference_request_success"]
    executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
    assert requests == 48
    assert after["nv_inference_count"] - before["nv_inference_count"] == 48
    assert executions < requests / 2, f"{requests} requests ran in {executions} executions: no batching"
    expected = torchscript_probs(Path(inference_service.registry.repository), version, crops_input(crops))
    np.testing.assert_allclose(np.array([list(r.faces[0].scores) for r in replies]), expected, atol=1e-4)


async def test_promote_rollback_and_a_new_version_without_restart(inference_stub, models_stub, inference_service, model_repository):
    crops = random_crops(2, seed=2)
    x = crops_input(crops)

    async def serving() -> tuple[int, np.ndarray]:
        reply = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
        return reply.model.version, np.array([list(f.scores) for f in reply.faces])

    start_version, _ = await serving()
    other = 1 if start_version == 2 else 2
    promoted = await models_stub.PromoteModel(inference_pb2.ModelVersionRequest(name=MODEL_NAME, version=other))
    assert promoted.promoted and promoted.version == other and promoted.state == "ready"
    version, scores = await serving()
    assert version == other
    np.testing.assert_allclose(scores, torchscript_probs(model_repository, other, x), atol=1e-4)
    assert not np.allclose(scores, torchscript_probs(model_repository, start_version, x), atol=1e-3)

    listed = await models_stub.ListModels(common_pb2.Empty())
    flags = {(v.name, v.version): v.promoted for v in listed.versions}
    assert flags[(MODEL_NAME, other)] and not flags[(MODEL_NAME, start_version)]
    assert all('"classes"' in v.metadata_json for v in listed.versions)

    rolled = await models_stub.RollbackModel(inference_pb2.RollbackModelRequest(name=MODEL_NAME))
    assert rolled.version == start_version and rolled.promoted
    assert (await serving())[0] == start_version

    # A version written while everything runs is loadable at once, and answers when asked for.
    new_dir = await asyncio.to_thread(export_random_resnet18, model_repository, 3)
    new = int(new_dir.name)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops, model_version=new))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    loaded = await models_stub.LoadModel(inference_pb2.ModelVersionRequest(name=MODEL_NAME, version=new))
    assert loaded.state == "ready" and not loaded.promoted
    reply = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops, model_version=new))
    assert reply.model.version == new
    np.testing.assert_allclose([list(f.scores) for f in reply.faces], torchscript_probs(model_repository, new, x), atol=1e-4)
    # The default is still the promoted version.
    assert (await serving())[0] == start_version

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await models_stub.PromoteModel(inference_pb2.ModelVersionRequest(name=MODEL_NAME, version=99))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_triton_down_is_unavailable_and_recovers_without_restart(inference_stub, triton):
    crops = random_crops(1, seed=3)
    await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
    await asyncio.to_thread(triton.stop)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unavailable" in caught.value.details()
    finally:
        # A fresh Triton (same ports) has no model loaded: the service loads it again by itself.
        await asyncio.to_thread(triton.start, 120)
    reply = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
    assert len(reply.faces) == 1


async def test_a_face_crop_is_one_face_with_the_whole_image_box(inference_stub, model_repository):
    """A FER2013-style 48x48 crop: one face, the whole image its box (by the small-image rule, and with
    mode=face); mode=face takes a large photo whole too; an unknown mode is INVALID_ARGUMENT."""
    photo = skdata.astronaut()
    crop = np.asarray(Image.fromarray(photo).crop((160, 40, 290, 190)).convert("L").resize((48, 48)))
    for mode in (inference_pb2.FACE_MODE_UNSPECIFIED, inference_pb2.FACE_MODE_FACE):
        reply = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(crop), mode=mode))
        assert len(reply.faces) == 1, (mode, reply.faces)
        face = reply.faces[0]
        assert (face.box.x, face.box.y, face.box.width, face.box.height) == (0, 0, 48, 48)
        assert face.detection_score == 0.0 and "one face" in reply.message
        expected = torchscript_probs(model_repository, reply.model.version, normalise(whole_face(crop)[None], InputSpec()))
        np.testing.assert_allclose(np.array(face.scores), expected[0], atol=1e-4)

    reply = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(photo), mode=inference_pb2.FACE_MODE_FACE))
    assert [(f.box.x, f.box.y, f.box.width, f.box.height) for f in reply.faces] == [(0, 0, 512, 512)]
    expected = torchscript_probs(model_repository, reply.model.version,
                                 normalise(whole_face(to_grey(Image.fromarray(photo)))[None], InputSpec()))
    np.testing.assert_allclose(np.array(reply.faces[0].scores), expected[0], atol=1e-4)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=png(crop), mode=7))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "mode" in caught.value.details()


async def test_a_versions_temperature_and_threshold_are_served(inference_stub, models_stub, model_repository):
    """A version whose metadata.json says temperature 3 and an uncertain_below threshold between its
    answers' top scores: its scores are softmax(logits / 3), the faces under the threshold are
    uncertain and the others not, and every label stays the top class."""
    version_dir = await asyncio.to_thread(export_random_resnet18, model_repository, 5)
    version = int(version_dir.name)
    crops = random_crops(4, seed=5)
    logits = torchscript_logits(model_repository, version, crops_input(crops))
    expected = softmax(logits, 3.0)
    tops = np.sort(expected.max(axis=1))
    gap = int(np.argmax(np.diff(tops)))  # the threshold sits in the widest gap between top scores
    assert tops[gap + 1] - tops[gap] > 1e-3, tops
    threshold = float(tops[gap] + tops[gap + 1]) / 2
    meta_path = version_dir / "metadata.json"
    meta = ModelMetadata.load(meta_path)
    meta.temperature, meta.uncertain_below = 3.0, threshold
    meta.save(meta_path)
    await models_stub.LoadModel(inference_pb2.ModelVersionRequest(name=MODEL_NAME, version=version))

    reply = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops, model_version=version))
    np.testing.assert_allclose([list(f.scores) for f in reply.faces], expected, atol=1e-4)
    flags = [f.uncertain for f in reply.faces]
    assert flags == (expected.max(axis=1) < threshold).tolist() and any(flags) and not all(flags)
    assert [f.label for f in reply.faces] == [CLASSES[i] for i in logits.argmax(axis=1)]

    # The same through PredictImage: a 56x64 crop is one face (its centre square, not stretched).
    for crop in crops:
        x = normalise(whole_face(to_grey(Image.open(io.BytesIO(crop))))[None], InputSpec())
        scores = softmax(torchscript_logits(model_repository, version, x), 3.0)[0]
        whole = await inference_stub.PredictImage(inference_pb2.PredictImageRequest(image=crop, model_version=version))
        assert len(whole.faces) == 1
        np.testing.assert_allclose(whole.faces[0].scores, scores, atol=1e-4)
        if abs(scores.max() - threshold) > 1e-3:
            assert whole.faces[0].uncertain == bool(scores.max() < threshold)

    # The promoted version (metadata defaults: temperature 1, threshold 0) never marks a face.
    default = await inference_stub.PredictCrops(inference_pb2.PredictCropsRequest(crops=crops))
    assert not any(f.uncertain for f in default.faces)
