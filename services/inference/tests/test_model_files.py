"""GetModelFile over real gRPC, on a model repository in a temp folder (no Triton: nothing is loaded)."""
import grpc
import pytest

from fer.v1 import inference_pb2, inference_pb2_grpc
from ferkit.grpc_client import open_channel
from tests.fixtures.model_files import CARD, MODEL, REPORT, model_service, write_version


@pytest.fixture(scope="module")
async def models(tmp_path_factory):
    repo = tmp_path_factory.mktemp("files") / "models"
    write_version(repo, 1)
    write_version(repo, 2, files=("report.md",))
    (repo / "secret.txt").write_text("outside any version")
    (repo / MODEL / "1" / "notes.txt").write_text("in a version, not published")
    async with model_service(repo) as address:
        channel = open_channel(address)
        yield inference_pb2_grpc.ModelServiceStub(channel)
        await channel.close()


def request(file: str, name: str = MODEL, version: int = 1) -> inference_pb2.ModelFileRequest:
    return inference_pb2.ModelFileRequest(name=name, version=version, file=file)


async def test_the_published_files_come_with_their_types(models):
    png = await models.GetModelFile(request("confusion_matrix.png"))
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n") and png.content_type == "image/png"
    report = await models.GetModelFile(request("report.md"))
    assert report.content.decode() == REPORT and report.content_type == "text/markdown; charset=utf-8"
    assert (await models.GetModelFile(request("MODEL_CARD.md"))).content.decode() == CARD


@pytest.mark.parametrize(("name", "version", "file"), [
    (MODEL, 2, "confusion_matrix.png"),  # a version without it
    (MODEL, 3, "report.md"),             # no such version
    ("other", 1, "report.md"),           # no such model
    ("..", 1, "report.md"),
    (f"{MODEL}/1/../..", 1, "report.md"),
    ("", 1, "report.md"),
    (MODEL, 0, "report.md"),
])
async def test_what_is_missing_is_not_found(models, name, version, file):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await models.GetModelFile(request(file, name, version))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()


@pytest.mark.parametrize("file", ["notes.txt", "model.pt", "../../secret.txt", "/etc/passwd", "report.md\x00", "", "REPORT.MD"])
async def test_only_the_listed_files_are_served(models, file):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await models.GetModelFile(request(file))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "confusion_matrix.png, report.md, MODEL_CARD.md" in caught.value.details()
