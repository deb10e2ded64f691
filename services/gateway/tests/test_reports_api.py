"""POST /reports, GET /reports/{id}, GET /reports/{id}/download through the gateway, with real
auth, reports and worker behind it."""
import asyncio
import io
import json
import time

from pypdf import PdfReader
from werkzeug.http import parse_options_header

from fer.v1 import reports_pb2_grpc
from ferkit.grpc_client import open_channel
from tests.fixtures.auth import register_and_login
from tests.fixtures.reports import sample_png, sample_result


async def save_prediction(reports_address, owner_id: str, **kwargs) -> str:
    channel = open_channel(reports_address)
    try:
        return (await reports_pb2_grpc.ReportsServiceStub(channel).SaveResult(sample_result(owner_id, **kwargs))).id
    finally:
        await channel.close()


async def wait_settled(client, report_id: str, headers: dict, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = (await client.get(f"/api/v1/reports/{report_id}", headers=headers)).json()
        if body["status"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def test_pdf_and_json_reports_through_the_gateway(reports_gateway, reports_address):
    client = reports_gateway
    alice = await register_and_login(client)
    prediction = await save_prediction(reports_address, alice["user"]["id"], notes="Team photo, Friday", labels=("happy", "neutral"))

    created = await client.post("/api/v1/reports", json={"prediction_id": prediction, "format": "pdf"}, headers=alice["headers"])
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued" and created.headers["location"] == f"/api/v1/reports/{created.json()['id']}"
    report = await wait_settled(client, created.json()["id"], alice["headers"])
    assert report["status"] == "done" and report["error"] is None and report["prediction_id"] == prediction
    download = await client.get(report["download_url"], headers=alice["headers"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == f'attachment; filename="{report["filename"]}"'
    assert report["filename"].endswith(".pdf") and len(download.content) == report["size_bytes"]
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(download.content)).pages).split())
    assert "Team photo, Friday" in text and "Face 1: happy" in text and "Face 2: neutral" in text

    created = await client.post("/api/v1/reports", json={"prediction_id": prediction, "format": "json"}, headers=alice["headers"])
    report = await wait_settled(client, created.json()["id"], alice["headers"])
    download = await client.get(f"/api/v1/reports/{report['id']}/download", headers=alice["headers"])
    assert download.headers["content-type"] == "application/json" and 'filename="' in download.headers["content-disposition"]
    doc = json.loads(download.content)
    assert doc["schema_version"] == 1 and [f["label"] for f in doc["faces"]] == ["happy", "neutral"]


async def test_files_of_a_photo_with_a_non_latin_name_download(reports_gateway, reports_address):
    """Item 1 of issue 12: every stored name that goes into a header is written per RFC 6266."""
    client = reports_gateway
    alice = await register_and_login(client)
    prediction = await save_prediction(reports_address, alice["user"]["id"], filename="日本.png")
    png = await client.get(f"/api/v1/predictions/{prediction}/annotated.png", headers=alice["headers"])
    assert png.status_code == 200
    assert parse_options_header(png.headers["content-disposition"]) == ("inline", {"filename": "日本-annotated.png"})
    created = await client.post("/api/v1/reports", json={"prediction_id": prediction, "format": "json"}, headers=alice["headers"])
    report = await wait_settled(client, created.json()["id"], alice["headers"])
    download = await client.get(report["download_url"], headers=alice["headers"])
    assert download.status_code == 200 and json.loads(download.content)["result"]["filename"] == "日本.png"
    assert parse_options_header(download.headers["content-disposition"]) == ("attachment", {"filename": report["filename"]})


async def test_another_users_report_is_404(reports_gateway, reports_address):
    client = reports_gateway
    alice, mallory = await register_and_login(client), await register_and_login(client)
    prediction = await save_prediction(reports_address, alice["user"]["id"])
    report_id = (await client.post("/api/v1/reports", json={"prediction_id": prediction}, headers=alice["headers"])).json()["id"]
    assert (await wait_settled(client, report_id, alice["headers"]))["status"] == "done"
    for path in (f"/api/v1/reports/{report_id}", f"/api/v1/reports/{report_id}/download"):
        response = await client.get(path, headers=mallory["headers"])
        assert response.status_code == 404 and response.json() == {"detail": "report not found"}
    # Nor can anyone ask for a report on someone else's prediction.
    response = await client.post("/api/v1/reports", json={"prediction_id": prediction, "format": "pdf"}, headers=mallory["headers"])
    assert response.status_code == 404
    assert (await client.get(f"/api/v1/reports/{report_id}")).status_code == 401


async def test_bad_requests_and_failed_reports(reports_gateway, reports_address):
    client = reports_gateway
    alice = await register_and_login(client)
    for body in ({"prediction_id": "x", "format": "docx"}, {"format": "pdf"}, {"prediction_id": "x", "colour": "red"}):
        response = await client.post("/api/v1/reports", json=body, headers=alice["headers"])
        assert response.status_code == 422, body
    missing = await client.post("/api/v1/reports", json={"prediction_id": "no-such-prediction"}, headers=alice["headers"])
    assert missing.status_code == 404
    png = sample_png()
    broken = await save_prediction(reports_address, alice["user"]["id"], original=png[: len(png) // 2])
    report_id = (await client.post("/api/v1/reports", json={"prediction_id": broken}, headers=alice["headers"])).json()["id"]
    report = await wait_settled(client, report_id, alice["headers"])
    assert report["status"] == "failed" and "truncated" in report["error"] and report["download_url"] is None
    download = await client.get(f"/api/v1/reports/{report_id}/download", headers=alice["headers"])
    assert download.status_code == 409 and "failed" in download.json()["detail"]
