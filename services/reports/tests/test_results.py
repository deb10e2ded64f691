"""The results history over real gRPC, on PostgreSQL and on SQLite."""
import io
import uuid

import grpc
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from fer.v1 import common_pb2, reports_pb2, reports_pb2_grpc
from ferkit.grpc_client import open_channel
from services.reports.models import Result
from tests.fixtures.reports import sample_png, sample_result


@pytest.fixture(scope="module")
async def stub(reports_address):
    channel = open_channel(reports_address)
    yield reports_pb2_grpc.ReportsServiceStub(channel)
    await channel.close()


def owner() -> str:
    return str(uuid.uuid4())


async def expect_code(code, call):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details()


async def test_save_and_get_round_trip(stub):
    me = owner()
    saved = await stub.SaveResult(sample_result(me, notes="first day at work\nsmiling", labels=("happy", "sad")))
    assert saved.id and saved.owner_id == me and saved.has_annotated_image
    got = await stub.GetResult(reports_pb2.GetResultRequest(owner_id=me, id=saved.id))
    assert got.notes == "first day at work\nsmiling" and got.filename == "astronaut.png"
    assert (got.model.name, got.model.version, list(got.model.classes)[3]) == ("fer-resnet18", 3, "happy")
    assert [f.label for f in got.faces] == ["happy", "sad"]
    assert (got.faces[1].box.x, got.faces[1].box.y, got.faces[1].box.width) == (232, 60, 110)
    assert got.faces[0].scores[3] == pytest.approx(0.88, abs=1e-6) and len(got.faces[0].scores) == 7
    assert got.timings.detect_ms == 41.0 and got.image_width == 512
    assert got.created_at.seconds > 0


async def test_uncertain_flag_is_kept(stub):
    me = owner()
    request = sample_result(me, labels=("happy", "sad"))
    request.faces[1].uncertain = True
    saved = await stub.SaveResult(request)
    assert [f.uncertain for f in saved.faces] == [False, True]
    got = await stub.GetResult(reports_pb2.GetResultRequest(owner_id=me, id=saved.id))
    assert [f.uncertain for f in got.faces] == [False, True] and [f.label for f in got.faces] == ["happy", "sad"]


async def test_large_images_are_kept_whole(stub, reports_service):
    me = owner()
    request = sample_result(me)
    request.original_image = bytes(range(256)) * (24 * 1024)  # 6 MiB: over gRPC's 4 MiB default
    saved = await stub.SaveResult(request)
    async with reports_service.sessions() as session:
        stored = (await session.execute(select(Result.original_image, Result.annotated_png).where(Result.id == saved.id))).one()
    assert stored == (request.original_image, b"")  # drawn when first asked for, not when saved


async def test_list_is_newest_first_and_paginated(stub):
    me = owner()
    ids = [(await stub.SaveResult(sample_result(me, notes=f"n{i}", original=b""))).id for i in range(5)]
    seen, token, pages = [], "", 0
    while True:
        page = await stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me, page=common_pb2.PageRequest(page_size=2, page_token=token)))
        assert page.page.total == 5
        seen += [r.id for r in page.results]
        pages += 1
        token = page.page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == list(reversed(ids))  # newest first, nothing twice, nothing missed
    # A result saved meanwhile does not shift a page already handed out (keyset, not offset).
    first = await stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me, page=common_pb2.PageRequest(page_size=2)))
    await stub.SaveResult(sample_result(me, original=b""))
    second = await stub.ListResults(
        reports_pb2.ListResultsRequest(owner_id=me, page=common_pb2.PageRequest(page_size=2, page_token=first.page.next_page_token))
    )
    assert [r.id for r in second.results] == list(reversed(ids))[2:4]


async def test_list_rejects_bad_pages(stub):
    me = owner()
    await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me, page=common_pb2.PageRequest(page_size=1000))))
    await expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me, page=common_pb2.PageRequest(page_token="not a token!"))),
    )
    empty = await stub.ListResults(reports_pb2.ListResultsRequest(owner_id=me))
    assert list(empty.results) == [] and empty.page.total == 0 and empty.page.next_page_token == ""


async def test_annotated_image_is_drawn_on_first_request_and_kept(stub, reports_service):
    me = owner()
    saved = await stub.SaveResult(sample_result(me, labels=("happy", "sad"), filename="holiday.jpg"))
    assert saved.has_annotated_image
    image = await stub.GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=me, id=saved.id))
    assert image.content_type == "image/png" and image.filename == "holiday-annotated.png"
    drawn = np.asarray(Image.open(io.BytesIO(image.content)).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(sample_png())).convert("RGB"))
    assert drawn.shape == original.shape
    # The boxes are drawn in each label's colour on the photo's pixels; the rest is the photo.
    changed = np.abs(drawn.astype(int) - original).sum(axis=2) > 60
    assert 0.005 < changed.mean() < 0.2
    async with reports_service.sessions() as session:
        kept = await session.scalar(select(Result.annotated_png).where(Result.id == saved.id))
    assert kept == image.content
    again = await stub.GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=me, id=saved.id))
    assert again.content == image.content
    bare = await stub.SaveResult(sample_result(me, original=b""))
    assert not bare.has_annotated_image
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=me, id=bare.id)))


async def test_an_undecodable_original_is_a_clear_error(stub):
    me = owner()
    png = sample_png()
    saved = await stub.SaveResult(sample_result(me, original=png[: len(png) // 3]))
    details = await expect_code(grpc.StatusCode.FAILED_PRECONDITION,
                                stub.GetAnnotatedImage(reports_pb2.GetResultRequest(owner_id=me, id=saved.id)))
    assert "cannot be drawn" in details and "truncated" in details


async def test_another_owner_sees_nothing(stub):
    me, other = owner(), owner()
    saved = await stub.SaveResult(sample_result(me))
    for call in (stub.GetResult, stub.GetAnnotatedImage):
        await expect_code(grpc.StatusCode.NOT_FOUND, call(reports_pb2.GetResultRequest(owner_id=other, id=saved.id)))
    assert list((await stub.ListResults(reports_pb2.ListResultsRequest(owner_id=other))).results) == []
    await expect_code(
        grpc.StatusCode.NOT_FOUND, stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=other, result_id=saved.id, format="pdf"))
    )
    await expect_code(grpc.StatusCode.NOT_FOUND, stub.GetResult(reports_pb2.GetResultRequest(owner_id=me, id="no-such-id")))


async def test_an_id_with_a_nul_byte_is_not_found_not_a_database_error(stub):
    me = owner()
    saved = await stub.SaveResult(sample_result(me))
    for bad in (saved.id + "\x00", "\x00", "r\x00'; --"):
        await expect_code(grpc.StatusCode.NOT_FOUND, stub.GetResult(reports_pb2.GetResultRequest(owner_id=me, id=bad)))
        await expect_code(grpc.StatusCode.NOT_FOUND, stub.RequestReport(reports_pb2.RequestReportRequest(owner_id=me, result_id=bad, format="pdf")))
        await expect_code(grpc.StatusCode.NOT_FOUND, stub.GetReport(reports_pb2.GetReportRequest(owner_id=me, id=bad)))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.faces[0].scores.pop(), "scores"),
        (lambda r: setattr(r, "owner_id", ""), "owner_id"),
        (lambda r: setattr(r, "notes", "x" * 5000), "notes"),
        (lambda r: setattr(r, "notes", "nul\x00byte"), "NUL"),
        (lambda r: setattr(r, "filename", "a\x00.png"), "NUL"),
        (lambda r: setattr(r.faces[0].box, "width", 0), "box"),
    ],
)
async def test_save_validates(stub, change, reason):
    request = sample_result(owner(), original=b"")
    change(request)
    assert reason in await expect_code(grpc.StatusCode.INVALID_ARGUMENT, stub.SaveResult(request))
