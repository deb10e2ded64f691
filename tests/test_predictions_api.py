"""POST /api/v1/predictions and friends through the real gateway, auth, reports and inference services
and the real bundled Triton: faces and expressions of a real photo, history, annotated images, the
owner-only rule, usage counts, bad uploads (each a clear 4xx with nothing stored), models and promote,
and Triton down answering 503."""
import asyncio
import io

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from werkzeug.http import parse_options_header

from ferkit.vision import CLASSES
from tests.fixtures.auth import register_and_login
from tests.fixtures.inference import UPLOAD_LIMIT
from tests.fixtures.triton import MODEL_NAME

API = "/api/v1"


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


ASTRONAUT = Image.fromarray(skdata.astronaut())


async def upload(client, headers, data: bytes, filename: str = "photo.png", notes: str | None = None):
    form = {"notes": notes} if notes is not None else None
    return await client.post(f"{API}/predictions", headers=headers, files={"file": (filename, data, "application/octet-stream")}, data=form)


async def state(client, headers) -> tuple[int, int]:
    """(results in the caller's history, the caller's usage count)."""
    history = (await client.get(f"{API}/predictions", headers=headers)).json()
    me = (await client.get(f"{API}/users/me", headers=headers)).json()
    return history["total"], me["computations"]


async def test_upload_a_photo_get_faces_history_and_annotated_image(predictions_gateway):
    client = predictions_gateway
    user = await register_and_login(client)
    headers = user["headers"]
    created = await upload(client, headers, encode(ASTRONAUT, "JPEG", quality=92), "astronaut.jpg", notes="first try")
    assert created.status_code == 201, created.text
    body = created.json()
    assert len(body["faces"]) == 1 and body["message"] == ""
    face = body["faces"][0]
    x, y, w, h = face["box"]
    assert 150 < x < 210 and 30 < y < 90 and 70 < w < 130
    assert face["label"] in CLASSES and set(face["scores"]) == set(CLASSES)
    assert abs(sum(face["scores"].values()) - 1) < 1e-3
    assert face["label"] == max(face["scores"], key=face["scores"].get)
    assert face["uncertain"] is False  # the test versions set no threshold
    assert body["model"]["name"] == MODEL_NAME and body["model"]["version"] >= 1
    assert body["notes"] == "first try" and body["filename"] == "astronaut.jpg"
    assert (body["image_width"], body["image_height"]) == (512, 512)
    assert body["timings"]["total_ms"] > 0 and body["timings"]["detect_ms"] > 0
    assert body["annotated_url"] == f"{API}/predictions/{body['id']}/annotated.png"

    png = await client.get(body["annotated_url"], headers=headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (512, 512)

    again = await client.get(f"{API}/predictions/{body['id']}", headers=headers)
    assert again.status_code == 200 and again.json()["faces"] == body["faces"]
    assert await state(client, headers) == (1, 1)

    # A second upload: the history pages, newest first.
    second = await upload(client, headers, encode(ASTRONAUT, "PNG"), "second.png")
    assert second.status_code == 201
    page = (await client.get(f"{API}/predictions", params={"page_size": 1}, headers=headers)).json()
    assert [item["id"] for item in page["items"]] == [second.json()["id"]] and page["total"] == 2
    rest = (await client.get(f"{API}/predictions", params={"page_size": 1, "page_token": page["next_page_token"]}, headers=headers)).json()
    assert [item["id"] for item in rest["items"]] == [body["id"]] and rest["next_page_token"] == ""
    assert await state(client, headers) == (2, 2)


async def test_non_latin_file_names_come_back_in_content_disposition(predictions_gateway):
    """Item 1 of issue 12: a name outside Latin-1 was a 500 when it went into the annotated image's header."""
    client = predictions_gateway
    user = await register_and_login(client)
    for filename, stem in (("фото.png", "фото"), ("日本.jpg", "日本")):
        created = await upload(client, user["headers"], encode(ASTRONAUT, "JPEG"), filename)
        assert created.status_code == 201, created.text
        assert created.json()["filename"] == filename
        png = await client.get(created.json()["annotated_url"], headers=user["headers"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert parse_options_header(png.headers["content-disposition"]) == ("inline", {"filename": f"{stem}-annotated.png"})


async def test_a_photo_over_four_megabytes_passes_every_hop(predictions_gateway):
    client = predictions_gateway
    user = await register_and_login(client)
    big = ASTRONAUT.resize((1500, 1500))
    noisy = np.asarray(big, dtype=np.int16) + np.random.default_rng(0).integers(-12, 13, size=(1500, 1500, 3))
    data = encode(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), "PNG")
    assert 4 * 1024 * 1024 < len(data) < UPLOAD_LIMIT
    created = await upload(client, user["headers"], data, "big.png")
    assert created.status_code == 201, created.text
    assert len(created.json()["faces"]) == 1
    png = await client.get(created.json()["annotated_url"], headers=user["headers"])
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (1500, 1500)


async def test_another_users_result_is_not_found(predictions_gateway):
    client = predictions_gateway
    owner, other = await register_and_login(client), await register_and_login(client)
    created = await upload(client, owner["headers"], encode(ASTRONAUT, "PNG"))
    assert created.status_code == 201
    result_id = created.json()["id"]
    for path in (f"{API}/predictions/{result_id}", f"{API}/predictions/{result_id}/annotated.png"):
        assert (await client.get(path, headers=other["headers"])).status_code == 404
        assert (await client.get(path)).status_code == 401
    assert (await client.get(f"{API}/predictions", headers=other["headers"])).json()["total"] == 0


async def test_photo_without_a_face_is_created_with_an_empty_list(predictions_gateway):
    client = predictions_gateway
    user = await register_and_login(client)
    sky = Image.linear_gradient("L").resize((300, 200)).convert("RGB")
    created = await upload(client, user["headers"], encode(sky, "PNG"))
    assert created.status_code == 201, created.text
    assert created.json()["faces"] == [] and "no face" in created.json()["message"]
    assert await state(client, user["headers"]) == (1, 1)


async def test_face_crops_and_mode_face_are_one_face_and_faces_say_if_uncertain(predictions_gateway):
    """A FER2013-style 48x48 crop is one face whose box is the whole image (with mode=face, and by the
    small-image rule without it); mode=face takes a whole photo as one face; every face carries
    `uncertain` (false here: the test versions have no threshold), in the history too; an unknown mode
    is a 422 with nothing stored or counted."""
    client = predictions_gateway
    user = await register_and_login(client)
    crop = encode(ASTRONAUT.crop((160, 40, 290, 190)).convert("L").resize((48, 48)), "PNG")
    ids = []
    for form in ({"mode": "face"}, None, {"mode": "detect"}):
        reply = await client.post(f"{API}/predictions", headers=user["headers"], files={"file": ("face.png", crop, "image/png")}, data=form)
        assert reply.status_code == 201, (form, reply.text)
        body = reply.json()
        assert len(body["faces"]) == 1, (form, body)
        face = body["faces"][0]
        assert face["box"] == [0, 0, 48, 48] and face["detection_score"] == 0
        assert face["uncertain"] is False and face["label"] == max(face["scores"], key=face["scores"].get)
        assert "one face" in body["message"]
        ids.append(body["id"])

    photo = await client.post(f"{API}/predictions", headers=user["headers"], files={"file": ("a.png", encode(ASTRONAUT, "PNG"), "image/png")},
                              data={"mode": "face"})
    assert photo.status_code == 201, photo.text
    assert [f["box"] for f in photo.json()["faces"]] == [[0, 0, 512, 512]]
    stored = (await client.get(f"{API}/predictions/{ids[0]}", headers=user["headers"])).json()
    assert stored["faces"][0]["uncertain"] is False and stored["faces"][0]["box"] == [0, 0, 48, 48]

    unknown = await client.post(f"{API}/predictions", headers=user["headers"], files={"file": ("face.png", crop, "image/png")},
                                data={"mode": "faces"})
    assert unknown.status_code == 422 and "mode" in str(unknown.json()["detail"])
    assert await state(client, user["headers"]) == (4, 4)


def bad_uploads() -> dict[str, tuple[bytes, int, str]]:
    """name -> (bytes, expected status, a word the message must contain)."""
    jpeg = encode(ASTRONAUT, "JPEG")
    frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:])
    return {
        "empty": (b"", 422, "empty"),
        "not an image": (b"%PDF-1.7 this is a document, not a photo" * 10, 415, "not an image"),
        "truncated": (jpeg[: len(jpeg) // 2], 422, "truncated"),
        "over the size limit": (b"\xff\xd8" + bytes(UPLOAD_LIMIT + 1), 413, "larger"),
        "decompression bomb": (encode(Image.new("L", (10_000, 10_000)), "PNG"), 413, "more than the 25000000 pixels allowed"),
        "enormous dimensions": (encode(Image.new("L", (20_000, 10)), "PNG"), 422, "exceed"),
        "multi-frame": (gif.getvalue(), 422, "frames"),
    }


async def test_bad_uploads_are_clear_4xx_and_nothing_is_stored(predictions_gateway):
    client = predictions_gateway
    user = await register_and_login(client)
    for name, (data, status, word) in bad_uploads().items():
        reply = await upload(client, user["headers"], data, "upload.bin")
        assert reply.status_code == status, (name, reply.status_code, reply.text)
        assert word in str(reply.json()["detail"]), (name, reply.json())
    missing = await client.post(f"{API}/predictions", headers=user["headers"], data={"notes": "no file"})
    assert missing.status_code == 422
    assert await state(client, user["headers"]) == (0, 0)


async def test_unusual_but_valid_images_are_converted(predictions_gateway):
    client = predictions_gateway
    user = await register_and_login(client)
    grey16 = Image.fromarray((np.asarray(ASTRONAUT.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    rgba = ASTRONAUT.convert("RGBA")
    rgba.putalpha(200)
    variants = {
        "cmyk.jpg": encode(ASTRONAUT.convert("CMYK"), "JPEG"),
        "grey16.png": encode(grey16, "PNG"),
        "alpha.png": encode(rgba, "PNG"),
        "palette.png": encode(ASTRONAUT.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
    }
    for filename, data in variants.items():
        reply = await upload(client, user["headers"], data, filename)
        assert reply.status_code == 201, (filename, reply.text)
        assert len(reply.json()["faces"]) == 1, filename
    assert await state(client, user["headers"]) == (4, 4)


async def test_models_listed_and_promoted_by_an_admin_only(predictions_gateway, inference_service):
    client = predictions_gateway
    user = await register_and_login(client)
    listed = await client.get(f"{API}/models", headers=user["headers"])
    assert listed.status_code == 200
    versions = {(m["name"], m["version"]): m for m in listed.json()["models"]}
    current = inference_service.registry.promoted(MODEL_NAME)
    assert versions[(MODEL_NAME, current)]["promoted"] and versions[(MODEL_NAME, current)]["state"] == "ready"
    assert versions[(MODEL_NAME, current)]["metadata"]["classes"] == list(CLASSES)
    other = next(v for (name, v) in versions if name == MODEL_NAME and v != current)

    path = f"{API}/models/{MODEL_NAME}/versions/{other}:promote"
    assert (await client.post(path, headers=user["headers"])).status_code == 403
    promoted = await client.post(path, headers=client.admin_headers)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["promoted"] and promoted.json()["version"] == other
    made = await upload(client, user["headers"], encode(ASTRONAUT, "PNG"))
    assert made.json()["model"]["version"] == other
    assert (await client.post(f"{API}/models/{MODEL_NAME}/versions/999:promote", headers=client.admin_headers)).status_code == 404
    rolled = await client.post(f"{API}/models/{MODEL_NAME}:rollback", headers=client.admin_headers)
    assert rolled.status_code == 200 and rolled.json()["version"] == current


async def test_triton_down_is_503_and_nothing_is_stored(predictions_gateway, triton):
    client = predictions_gateway
    user = await register_and_login(client)
    await asyncio.to_thread(triton.stop)
    try:
        reply = await upload(client, user["headers"], encode(ASTRONAUT, "PNG"))
        assert reply.status_code == 503, reply.text
        assert reply.headers.get("retry-after")
        assert await state(client, user["headers"]) == (0, 0)
    finally:
        await asyncio.to_thread(triton.start, 120)
    # Back without restarting anything else.
    reply = await upload(client, user["headers"], encode(ASTRONAUT, "PNG"))
    assert reply.status_code == 201, reply.text
    assert await state(client, user["headers"]) == (1, 1)


async def stored_results(client, owner_id: str) -> int:
    from sqlalchemy import func, select

    from services.reports.models import Result

    async with client.reports_servicer.sessions() as session:
        return await session.scalar(select(func.count()).select_from(Result).where(Result.owner_id == owner_id))


async def refused_analysis(address: str, owner_id: str) -> grpc.aio.AioRpcError:
    """AnalyzeImage called on the reports service directly, as the gateway does; the error it answers."""
    from fer.v1 import reports_pb2, reports_pb2_grpc
    from ferkit.grpc_client import open_channel

    channel = open_channel(address, timeout_s=30)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await reports_pb2_grpc.ReportsServiceStub(channel).AnalyzeImage(
                reports_pb2.AnalyzeImageRequest(owner_id=owner_id, image=encode(ASTRONAUT, "PNG"), filename="photo.png"))
    finally:
        await channel.close()
    return caught.value


async def test_an_upload_for_an_account_deleted_meanwhile_is_neither_stored_nor_counted(predictions_gateway):
    """The race of an upload with DELETE /users/me: the gateway has let the upload in, the account is gone
    when the reports service counts it. Nothing is stored, and the caller hears that the account is gone."""
    client = predictions_gateway
    user = await register_and_login(client)
    owner_id = user["user"]["id"]
    assert (await client.delete(f"{API}/users/me", headers=user["headers"])).status_code == 204
    error = await refused_analysis(client.reports_settings.grpc_address, owner_id)
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert await stored_results(client, owner_id) == 0


async def test_auth_down_when_counting_is_503_and_nothing_is_stored(predictions_gateway, inference_address):
    """A reports service whose auth service is unreachable: the photo is analysed, but it is not kept
    unless it is counted."""
    from tests.fixtures.databases import free_port
    from tests.fixtures.reports import start_reports, stop_reports

    client = predictions_gateway
    user = await register_and_login(client)
    owner_id = user["user"]["id"]
    settings = client.reports_settings.model_copy(update={"grpc_port": free_port(), "auth_addr": f"127.0.0.1:{free_port()}",
                                                          "inference_addr": inference_address, "grpc_timeout_s": 3.0})
    service, servicer = await start_reports(settings)
    try:
        error = await refused_analysis(settings.grpc_address, owner_id)
    finally:
        await stop_reports(service, servicer)
    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), error.details()
    assert await stored_results(client, owner_id) == 0
    assert await state(client, user["headers"]) == (0, 0)


async def test_training_jobs_are_for_admins_and_a_missing_dataset_is_refused_at_submit(predictions_gateway):
    """The whole platform's wiring (the inference service's job records in its own database); every
    route and refusal, progress, the log and cancelling: services/gateway/tests/test_training_jobs_api.py."""
    client = predictions_gateway
    user = await register_and_login(client)
    job = {"dataset": "fer2013/absent.csv.gz", "recipe": "fer2013_resnet18_cpu", "gpus": 0}
    assert (await client.post(f"{API}/training-jobs", json=job, headers=user["headers"])).status_code == 403
    escaping = await client.post(f"{API}/training-jobs", json={**job, "dataset": "../../etc/passwd"}, headers=client.admin_headers)
    assert escaping.status_code == 422 and "relative path" in escaping.json()["detail"][0]["msg"]
    # The dataset does not exist under the local launcher's data root: refused now, with the cause.
    absent = await client.post(f"{API}/training-jobs", json=job, headers=client.admin_headers)
    assert absent.status_code == 422, absent.text
    assert absent.json()["detail"][0]["msg"].startswith("dataset not found: fer2013/absent.csv.gz under /")
    listed = await client.get(f"{API}/training-jobs", headers=client.admin_headers)
    assert listed.status_code == 200 and listed.json()["total"] == 0
    assert (await client.get(f"{API}/training-jobs/unknown", headers=client.admin_headers)).status_code == 404
