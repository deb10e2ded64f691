"""POST /api/v1/batches and friends through the real gateway, auth, reports (PostgreSQL, RabbitMQ and a
worker), inference and Triton: files and a ZIP (with a path-traversal member, a non-image and a bomb)
become predictions in the history, counted one per photo; the skipped files are items with their
reason; the CSV has a row per face; another user's batch is 404; the limits answer 413 and 422."""
import asyncio
import csv
import io
import zipfile

import pytest

from ferkit.limits import ARCHIVE_MAX_MEMBERS
from ferkit.vision import CLASSES
from services.gateway.app import create_app
from tests.fixtures.auth import register_and_login
from tests.fixtures.inference import settled
from tests.fixtures.reports import astronaut

API = "/api/v1"
MiB = 1024 * 1024


def zip_of(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            archive.writestr(name, content)
    return out.getvalue()


@pytest.fixture
async def limited_gateway(predictions_gateway):
    """A second gateway on the same services with small batch limits, so limits are tested with small files."""
    import httpx

    settings = predictions_gateway.app.state.settings.model_copy(
        update={"batch_max_photos": 3, "batch_max_bytes": 400_000, "max_upload_bytes": 200_000})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            yield client


async def test_files_and_a_zip_become_predictions_a_csv_and_skipped_items(predictions_gateway, predictions_worker):
    client = predictions_gateway
    alice, mallory = await register_and_login(client), await register_and_login(client)
    photo = astronaut("JPEG", 512, quality=85)
    archive = zip_of([
        ("photos/", b""),
        ("photos/a.jpg", photo),
        ("../evil.jpg", photo),
        ("/abs.jpg", photo),
        ("readme.txt", b"these are my photos"),
        ("bomb.png", bytes(6 * MiB)),  # deflates a thousandfold
    ])
    files = [("files", ("astronaut.jpg", photo, "image/jpeg")), ("files", ("notes.txt", b"hello", "text/plain")),
             ("archive", ("photos.zip", archive, "application/zip"))]
    created = await client.post(f"{API}/batches", headers=alice["headers"], files=files, data={"notes": "class 3B"})
    assert created.status_code == 202, created.text
    assert set(created.json()) == {"id", "status"} and created.json()["status"] == "queued"
    batch_id = created.json()["id"]
    assert created.headers["location"] == f"{API}/batches/{batch_id}"

    batch = await settled(client, created.headers["location"], alice["headers"], 180.0, "the batch did not finish")
    assert batch["status"] == "done" and batch["progress"] == {"done": 7, "total": 7} and batch["failed"] == 5
    assert batch["notes"] == "class 3B" and batch["error"] is None
    items = {item["filename"]: item for item in batch["items"]}
    assert set(items) == {"astronaut.jpg", "notes.txt", "photos/a.jpg", "../evil.jpg", "/abs.jpg", "readme.txt", "bomb.png"}
    for name in ("astronaut.jpg", "photos/a.jpg"):
        assert items[name]["status"] == "done" and items[name]["faces"] == 1 and "error" not in items[name]
        prediction = await client.get(f"{API}/predictions/{items[name]['prediction_id']}", headers=alice["headers"])
        assert prediction.status_code == 200 and prediction.json()["filename"] == name
        assert len(prediction.json()["faces"]) == 1
    assert items["../evil.jpg"] == {"filename": "../evil.jpg", "status": "failed", "error": "path outside the archive"}
    assert items["/abs.jpg"]["error"] == "path outside the archive"
    assert "not an image" in items["notes.txt"]["error"] and "not an image" in items["readme.txt"]["error"]
    assert "ZIP bomb" in items["bomb.png"]["error"]
    assert all("prediction_id" not in items[name] for name in ("../evil.jpg", "notes.txt", "bomb.png"))

    # Counted and kept like single uploads: two photos, two computations.
    history = (await client.get(f"{API}/predictions", headers=alice["headers"])).json()
    assert history["total"] == 2
    assert (await client.get(f"{API}/users/me", headers=alice["headers"])).json()["computations"] == 2

    results = await client.get(batch["csv_url"], headers=alice["headers"])
    assert results.status_code == 200 and results.headers["content-type"].startswith("text/csv")
    assert results.headers["content-disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(results.text)))
    assert {"filename", "label", *CLASSES} <= set(rows[0])
    analysed = [row for row in rows if row["filename"] in ("astronaut.jpg", "photos/a.jpg")]
    assert len(analysed) == 2 and all(row["label"] in CLASSES for row in analysed)
    assert all(abs(sum(float(row[name]) for name in CLASSES) - 1) < 1e-2 for row in analysed)

    listed = (await client.get(f"{API}/batches", headers=alice["headers"])).json()
    assert [item["id"] for item in listed["items"]] == [batch_id] and listed["total"] == 1
    assert "items" not in listed["items"][0] and listed["items"][0]["progress"] == {"done": 7, "total": 7}

    # Owner-only: another user's id is not found, and their list is empty.
    for url in (f"{API}/batches/{batch_id}", batch["csv_url"]):
        assert (await client.get(url, headers=mallory["headers"])).status_code == 404
    assert (await client.get(f"{API}/batches", headers=mallory["headers"])).json()["total"] == 0
    assert (await client.post(f"{API}/reports", json={"batch_id": batch_id}, headers=mallory["headers"])).status_code == 404

    # A report on the batch, like one on a photo.
    report = await client.post(f"{API}/reports", json={"batch_id": batch_id, "format": "json"}, headers=alice["headers"])
    assert report.status_code == 202, report.text
    report_url = report.headers["location"]
    for _ in range(300):
        body = (await client.get(report_url, headers=alice["headers"])).json()
        if body["status"] in ("done", "failed"):
            break
        await asyncio.sleep(0.2)
    assert body["status"] == "done", body
    assert body["batch_id"] == batch_id and body["prediction_id"] is None and body["video_id"] is None
    assert (await client.get(body["download_url"], headers=alice["headers"])).status_code == 200


async def test_what_a_batch_refuses(predictions_gateway, limited_gateway):
    headers = (await register_and_login(predictions_gateway))["headers"]
    photo = astronaut("JPEG", 256, quality=85)

    nothing = await predictions_gateway.post(f"{API}/batches", headers=headers, data={"notes": "no files"})
    assert nothing.status_code == 422 and "`files`" in nothing.json()["detail"][0]["msg"]

    not_photos = [("files", ("a.txt", b"text", "text/plain")), ("files", ("b.bin", b"\x00" * 50, "application/octet-stream"))]
    no_photo = await predictions_gateway.post(f"{API}/batches", headers=headers, files=not_photos)
    assert no_photo.status_code == 422
    assert no_photo.json()["detail"][0]["msg"].startswith("the batch has no usable photo: a.txt: the file is not an image")

    not_zip = await predictions_gateway.post(f"{API}/batches", headers=headers, files={"archive": ("photos.zip", photo, "application/zip")})
    assert not_zip.status_code == 422 and "not a ZIP archive" in not_zip.json()["detail"][0]["msg"]

    crowded = zip_of([(f"{i}/", b"") for i in range(ARCHIVE_MAX_MEMBERS + 1)])
    too_many_entries = await predictions_gateway.post(f"{API}/batches", headers=headers,
                                                      files={"archive": ("many.zip", crowded, "application/zip")})
    assert too_many_entries.status_code == 413 and f"{ARCHIVE_MAX_MEMBERS + 1} entries" in too_many_entries.json()["detail"]

    bad_mode = await predictions_gateway.post(f"{API}/batches", headers=headers, files={"files": ("a.jpg", photo, "image/jpeg")},
                                              data={"mode": "all"})
    assert bad_mode.status_code == 422

    # The limited gateway: at most 3 files, 400 000 bytes in all, 200 000 per photo.
    four = [("files", (f"{i}.jpg", photo, "image/jpeg")) for i in range(4)]
    assert (reply := await limited_gateway.post(f"{API}/batches", headers=headers, files=four)).status_code == 413
    assert reply.json()["detail"] == "the batch holds 4 files; at most 3 are accepted"
    in_zip = zip_of([(f"{i}.jpg", photo) for i in range(3)])
    two_and_a_zip = [("files", ("a.jpg", photo, "image/jpeg")), ("archive", ("more.zip", in_zip, "application/zip"))]
    assert (reply := await limited_gateway.post(f"{API}/batches", headers=headers, files=two_and_a_zip)).status_code == 413
    assert reply.json()["detail"] == "the batch holds 4 files; at most 3 are accepted"
    heavy = [("files", (f"{i}.bin", bytes([i]) * 190_000, "application/octet-stream")) for i in range(3)]
    assert (reply := await limited_gateway.post(f"{API}/batches", headers=headers, files=heavy)).status_code == 413
    assert reply.json()["detail"] == "the photos of the batch are larger than 400000 bytes in all"

    # One photo over the per-image limit is skipped with its reason; the others still run.
    big_and_fine = [("files", ("big.jpg", b"\xff\xd8" + bytes(250_000), "image/jpeg")), ("files", ("fine.jpg", photo, "image/jpeg"))]
    accepted = await limited_gateway.post(f"{API}/batches", headers=headers, files=big_and_fine)
    assert accepted.status_code == 202, accepted.text
    items = (await limited_gateway.get(accepted.headers["location"], headers=headers)).json()["items"]
    assert {"filename": "big.jpg", "status": "failed", "error": "the image is larger than 200000 bytes"} in items

    assert (await predictions_gateway.get(f"{API}/batches/no-such-batch", headers=headers)).status_code == 404
    assert (await predictions_gateway.get(f"{API}/batches/no-such-batch/results.csv", headers=headers)).status_code == 404
    for body in ({"format": "pdf"}, {"prediction_id": "p", "batch_id": "b"}, {"batch_id": "b", "video_id": "v"}):
        assert (await predictions_gateway.post(f"{API}/reports", json=body, headers=headers)).status_code == 422


async def test_the_limits_are_published(predictions_gateway):
    limits = (await predictions_gateway.get(f"{API}/limits")).json()
    assert limits["batch_max_photos"] == 200 and limits["archive_max_members"] == ARCHIVE_MAX_MEMBERS
    assert limits["video_default_fps"] == 4 and limits["video_max_fps"] == 15 and limits["live_frame_max_bytes"] == 2 * MiB
