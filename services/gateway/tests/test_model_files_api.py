"""A model version's published files through the gateway: the real auth service and the real ModelService
over a model repository in a temp folder (GetModelFile loads nothing, so no Triton for most of these), and
once through the whole platform, to the card the exporter wrote for a served version."""
import asyncio

import pytest

from tests.fixtures.auth import AUTH_MIGRATIONS, auth_test_settings, migrated, register_and_login, start_gateway
from tests.fixtures.model_files import CARD, MODEL, REPORT, model_service, write_version

API = "/api/v1"
VERSION = f"{API}/models/{MODEL}/versions"


@pytest.fixture(scope="module")
async def files_gateway(postgres_database, tmp_path_factory):
    """One database backend: these routes store nothing."""
    from services.auth.server import build

    repo = tmp_path_factory.mktemp("published") / "models"
    write_version(repo, 1)
    write_version(repo, 2, files=())
    await asyncio.to_thread(migrated, postgres_database, AUTH_MIGRATIONS)
    settings = auth_test_settings(postgres_database)
    service, servicer = build(settings)
    await service.start()
    async with model_service(repo) as address:
        app, client, lifespan = await start_gateway(auth_addr=settings.grpc_address, inference_addr=address)
        client.user = await register_and_login(client)
        yield client
        await client.aclose()
        await lifespan.__aexit__(None, None, None)
    await service.stop()
    await servicer.engine.dispose()


async def test_the_confusion_matrix_is_a_png_for_any_logged_in_user(files_gateway):
    reply = await files_gateway.get(f"{VERSION}/1/confusion_matrix.png", headers=files_gateway.user["headers"])
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/png"
    assert reply.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert reply.headers["content-disposition"] == f'inline; filename="{MODEL}-1-confusion_matrix.png"'
    assert (await files_gateway.get(f"{VERSION}/1/confusion_matrix.png")).status_code == 401


@pytest.mark.parametrize(("path", "text"), [("report", REPORT), ("card", CARD)])
async def test_report_and_card_come_raw_or_rendered(files_gateway, path, text):
    headers = files_gateway.user["headers"]
    raw = await files_gateway.get(f"{VERSION}/1/{path}", params={"format": "raw"}, headers=headers)
    assert raw.status_code == 200 and raw.headers["content-type"] == "text/markdown; charset=utf-8"
    assert raw.text == text

    page = await files_gateway.get(f"{VERSION}/1/{path}", headers=headers)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text.startswith("<!doctype html>") and "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert (await files_gateway.get(f"{VERSION}/1/{path}", params={"format": "pdf"}, headers=headers)).status_code == 422


async def test_the_rendered_report_is_markup_only_where_markdown_says(files_gateway):
    page = (await files_gateway.get(f"{VERSION}/1/report", headers=files_gateway.user["headers"])).text
    assert "<h1>Evaluation report: fer_files v1</h1>" in page
    assert '<td style="text-align:right">70.19%</td>' in page
    assert '<img src="confusion_matrix.png" alt="confusion matrix" />' in page  # the route beside this one
    # HTML in the markdown is text, and a javascript: link is no link.
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="javascript:' not in page


@pytest.mark.parametrize("path", [
    f"{VERSION}/2/confusion_matrix.png", f"{VERSION}/2/report", f"{VERSION}/2/card",  # a version without them
    f"{VERSION}/9/card",                                                                # no such version
    f"{API}/models/nope/versions/1/report",                                             # no such model
    f"{API}/models/..%2F..%2Fetc/versions/1/card",
])
async def test_a_missing_file_is_404(files_gateway, path):
    reply = await files_gateway.get(path, headers=files_gateway.user["headers"])
    assert reply.status_code == 404 and "detail" in reply.json(), reply.text


async def test_a_version_out_of_range_is_422(files_gateway):
    for version in ("0", "10093942009778450432"):
        reply = await files_gateway.get(f"{VERSION}/{version}/card", headers=files_gateway.user["headers"])
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["path", "version"]


async def test_the_card_the_exporter_wrote_through_the_whole_platform(predictions_gateway, model_repository):
    from tests.fixtures.triton import MODEL_NAME

    headers = predictions_gateway.admin_headers
    reply = await predictions_gateway.get(f"{API}/models/{MODEL_NAME}/versions/1/card", params={"format": "raw"}, headers=headers)
    assert reply.status_code == 200 and reply.text == (model_repository / MODEL_NAME / "1" / "MODEL_CARD.md").read_text()
    assert reply.text.startswith(f"# Model card: {MODEL_NAME} version 1")
