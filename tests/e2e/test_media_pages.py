"""The batch, video and live-camera pages in a real browser against the running platform."""
import csv
import io
import json
import re
import zipfile

import pytest

from tests.e2e.conftest import fail_on_alert, log_in, register, screenshot
from tests.e2e.test_frontend import CLASSES, assert_fits_and_labelled

JOB_TIMEOUT_MS = 180_000
LIVE_TIMEOUT_MS = 90_000


def astronaut_files(tmp_path):
    """Two photos (a face, a plain wall) and a ZIP holding another face, a text file and a member whose
    name leaves the archive."""
    from PIL import Image
    from skimage import data

    face = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(face)
    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (320, 240), (200, 190, 170)).save(wall, quality=90)
    mirrored = io.BytesIO()
    Image.fromarray(data.astronaut()[:, ::-1]).save(mirrored, format="JPEG", quality=90)
    archive = tmp_path / "trip.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("trip/mirrored.jpg", mirrored.getvalue())
        zipped.writestr("trip/readme.txt", "not a photo\n")
        zipped.writestr("../escape.jpg", mirrored.getvalue())
    return face, wall, archive


def nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def wait_for_job(page) -> None:
    """Until the job's page says done, or fails with what the page says instead (an error, or where it stopped)."""
    status = page.locator(".job-status")
    finished = status.and_(page.locator("[data-status=done], [data-status=failed]"))
    alert = page.locator("main").get_by_role("alert").filter(has_text=re.compile(r"\S"))
    try:
        finished.or_(alert).first.wait_for(timeout=JOB_TIMEOUT_MS)
    except Exception:
        pytest.fail(f"the job did not finish; the page says: {status.inner_text()!r}")
    fail_on_alert(page)
    assert status.get_attribute("data-status") == "done", status.inner_text()


def downloaded_text(page, link) -> tuple[str, str]:
    with page.expect_download(timeout=JOB_TIMEOUT_MS) as download_info:
        link.click()
    download = download_info.value
    path = download.path()
    assert path is not None, download.failure()
    return download.suggested_filename, open(path, encoding="utf-8").read()


def test_batch_of_photos_and_a_zip(page, api, tmp_path):
    face, wall, archive = astronaut_files(tmp_path)
    user = register(api)
    log_in(page, user["email"])
    nav(page, "Batch")
    page.get_by_role("heading", level=1, name="Analyse many photos").wait_for()
    run = page.get_by_role("button", name="Upload and analyse")
    assert run.is_disabled(), "nothing to upload before files are chosen"
    page.get_by_label("Choose photos or a ZIP").set_input_files([str(face), str(wall), str(archive)])
    page.get_by_text("3 files chosen").wait_for()
    assert page.get_by_role("list", name="Chosen files").locator("li").count() == 3
    page.get_by_label("Notes (optional)").fill("Field trip")
    screenshot(page, "20-batch-chosen")
    run.click()

    # The batch's own page, followed until done.
    page.wait_for_url(re.compile(r".*#/batches/[^/]+$"), timeout=JOB_TIMEOUT_MS)
    page.get_by_role("heading", level=1, name="Batch of photos").wait_for()
    batch_id = page.url.rsplit("/", 1)[1]
    wait_for_job(page)

    # The table says what the API says, item by item, in upload order.
    batch = api.get(f"/batches/{batch_id}", headers=user["headers"]).json()
    items = batch["items"]
    assert batch["progress"] == {"done": len(items), "total": len(items)}
    page.get_by_text(f"{len(items)} of {len(items)} files finished").wait_for()
    assert page.locator("progress").evaluate("bar => [bar.value, bar.max]") == [len(items), len(items)]
    rows = page.locator("table.batch-table tbody tr")
    assert rows.count() == len(items)
    by_name = {}
    for i, item in enumerate(items):
        row = rows.nth(i)
        assert row.locator("th").inner_text() == item["filename"]
        by_name[item["filename"]] = row
        if "prediction_id" in item:
            assert row.get_attribute("data-status") == "done"
            link = row.get_by_role("link", name=f"Open the result of {item['filename']}")
            assert link.get_attribute("href") == f"#/results/{item['prediction_id']}"
        else:
            assert row.get_attribute("data-status") == "failed"
            assert row.locator("td").nth(1).inner_text() == item["error"]
    assert [item["filename"] for item in items[:2]] == ["astronaut.png", "wall.jpg"]
    failed = [item for item in items if "error" in item]
    assert len(failed) >= 2, "the text file and the member outside the archive are failed items with a reason"
    assert any(re.search("outside", item["error"]) for item in failed), failed

    # Each face's label comes from the CSV once it is ready; the wall has none.
    by_name["astronaut.png"].locator("td").nth(1).filter(has_text=re.compile(rf"^\d+ faces?: ({'|'.join(CLASSES)})")).wait_for()
    assert by_name["wall.jpg"].locator("td").nth(1).inner_text() == "No face found"
    screenshot(page, "21-batch-done")

    # The CSV: one row per face, a row with an empty label for the photo without a face.
    name, text = downloaded_text(page, page.get_by_role("link", name="Download CSV"))
    assert name.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(text)))
    header = [column.lower() for column in table[0].keys()]
    assert "filename" in header and "label" in header, header
    for label in CLASSES:
        assert any(label in column for column in header), (label, header)
    rows_of = {}
    for row in table:
        rows_of.setdefault(row["filename"], []).append(row)
    assert [row["label"] for row in rows_of["wall.jpg"]] == [""]
    assert rows_of["astronaut.png"] and all(row["label"] in CLASSES for row in rows_of["astronaut.png"])
    assert set(rows_of) == {item["filename"] for item in items}, "every file has its row(s)"
    for item in failed:
        assert [(row["label"], row["error"]) for row in rows_of[item["filename"]]] == [("", item["error"])]
    shown = by_name["astronaut.png"].locator("td").nth(1).inner_text()
    assert shown.endswith(", ".join(row["label"] for row in rows_of["astronaut.png"]))

    # A photo's result opens from the table; the batch is among the recent ones with its notes.
    by_name["astronaut.png"].get_by_role("link").click()
    page.get_by_role("heading", level=1, name="Analysis result").wait_for()
    nav(page, "Batch")
    recent = page.locator(".recent ol.history > li")
    recent.first.wait_for()
    assert "Field trip" in recent.first.inner_text()
    assert recent.first.get_by_role("link").get_attribute("href") == f"#/batches/{batch_id}"
    screenshot(page, "22-batch-recent")


def test_another_users_batch_is_not_found(page, api, tmp_path):
    face, _, _ = astronaut_files(tmp_path)
    owner = register(api)
    with face.open("rb") as image:
        created = api.post("/batches", headers=owner["headers"], files=[("files", ("astronaut.png", image, "image/png"))], data={"notes": "private"})
    assert created.status_code == 202, created.text
    intruder = register(api)
    log_in(page, intruder["email"])
    page.goto(f"/#/batches/{created.json()['id']}")
    page.get_by_role("heading", level=1, name="Batch not found").wait_for()
    assert "private" not in page.locator("main").inner_text()


def test_video_progress_timeline_and_tracks(page, api, tmp_path):
    from tests.fixtures.videos import write_video

    clip = tmp_path / "walk.mp4"
    write_video(clip, seconds=4.0, fps=15, size=(480, 320))
    user = register(api)
    log_in(page, user["email"])
    polled = []
    page.on("response", lambda response: polled.append(response) if re.search(r"/api/v1/videos/[^/]+$", response.url) else None)

    nav(page, "Video")
    page.get_by_role("heading", level=1, name="Analyse a video").wait_for()
    page.get_by_label("Choose a video").set_input_files(str(clip))
    page.get_by_text(re.compile(r"walk\.mp4 \(\d+ KB\)")).wait_for()
    fps = page.get_by_label("Frames analysed per second")
    assert fps.input_value() == "4"
    fps.fill("100")
    page.get_by_role("button", name="Upload and analyse").click()
    page.get_by_role("alert").filter(has_text="Frames per second: choose a number from").wait_for()
    assert page.evaluate("() => document.activeElement.id") == "video-fps", "focus goes to the field to fix"
    fps.fill("4")
    page.get_by_label("Notes (optional)").fill("Walking past")
    page.get_by_role("button", name="Upload and analyse").click()

    page.wait_for_url(re.compile(r".*#/videos/[^/]+$"), timeout=JOB_TIMEOUT_MS)
    page.get_by_role("heading", level=1, name="Video analysis").wait_for()
    video_id = page.url.rsplit("/", 1)[1]
    wait_for_job(page)

    # The page followed the work: it saw it before it was done, with frames counted.
    bodies = [response.json() for response in polled if response.ok]
    assert bodies[0]["status"] in ("queued", "running"), "the first look finds the video still in the queue or at work"
    assert bodies[-1]["status"] == "done"
    progress = bodies[-1]["progress"]
    assert progress["done"] == progress["total"] and abs(progress["total"] - 16) <= 1, progress  # 4 s at 4 frames a second

    # The timeline picture (fetched with the token), with words for it.
    picture = page.locator("figure.timeline img")
    picture.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    alt = picture.get_attribute("alt")
    assert re.match(r"^Timeline of expressions over [34]\.\d s: Face \d+ from \d\.\d s to \d\.\d s, mostly \w+ \(\d+\.\d%\)", alt), alt
    video = api.get(f"/videos/{video_id}", headers=user["headers"]).json()
    assert len(video["tracks"]) >= 1
    track = video["tracks"][0]
    row = page.locator(f"table.tracks-table tr[data-track='{track['track']}']")
    assert row.locator("td").nth(1).inner_text() == track["summary"]["dominant_label"].capitalize()
    bars = row.locator("ul.bars li")
    assert bars.count() == len(track["summary"]["share"]) == 7
    assert page.locator("table.tracks-table tbody tr").count() == len(video["tracks"])
    screenshot(page, "23-video-done")

    name, text = downloaded_text(page, page.get_by_role("link", name="Download CSV"))
    assert name.endswith(".csv")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) > 1, text

    nav(page, "Video")
    recent = page.locator(".recent ol.history > li")
    recent.first.wait_for()
    assert "walk.mp4" in recent.first.inner_text() and "Walking past" in recent.first.inner_text()


def test_live_camera_draws_faces_and_saves_a_snapshot(camera_page, api):
    page = camera_page
    user = register(api)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    log_in(page, user["email"])
    nav(page, "Live")
    page.get_by_role("heading", level=1, name="Live camera").wait_for()
    page.get_by_role("button", name="Start camera").click()

    # Boxes come back and are drawn over the video; the speed shows. Read in one go, between two replies.
    seen = page.wait_for_function(
        """() => {
            const stage = document.querySelector('.live-stage');
            if (!(Number(stage.dataset.faces) > 0)) return false;
            const canvas = stage.querySelector('canvas');
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
            return { now: document.querySelector('.live-now').textContent, painted };
        }""",
        timeout=LIVE_TIMEOUT_MS,
    ).json_value()
    fail_on_alert(page)
    assert re.match(rf"^1 face: ({'|'.join(CLASSES)})(, uncertain)? \(\d+\.\d%\)$", seen["now"]), seen
    assert seen["painted"] > 100, "a box and its label are painted on the overlay"
    page.wait_for_function("() => parseFloat(document.querySelector('[data-field=fps]').textContent) > 0", timeout=LIVE_TIMEOUT_MS)
    assert re.match(r"^\d+ ms$", page.locator("[data-field=ms]").inner_text())
    page.wait_for_timeout(1500)  # a little history for the chart
    page.get_by_text(re.compile(r"^In the last minute a face was seen in")).wait_for()
    screenshot(page, "24-live-camera")

    # The token travelled in the first message, not in the address.
    assert sockets and all(url.endswith("/api/v1/live") for url in sockets), sockets

    # Nothing is stored or counted until a snapshot is saved.
    assert api.get("/users/me", headers=user["headers"]).json()["computations"] == 0
    page.get_by_role("button", name="Save snapshot").click()
    opened = page.get_by_role("link", name="Open the snapshot's result")
    opened.wait_for(timeout=LIVE_TIMEOUT_MS)
    assert api.get("/users/me", headers=user["headers"]).json()["computations"] == 1

    page.get_by_role("button", name="Stop camera").click()
    page.get_by_text("The camera is off.").wait_for()
    assert page.locator(".live-stage video").evaluate("video => video.srcObject") is None
    assert page.get_by_role("button", name="Save snapshot").is_disabled()
    opened.click()
    page.get_by_role("heading", level=1, name="Analysis result").wait_for()
    page.get_by_text("Live camera snapshot").wait_for()


def test_leaving_the_live_page_stops_the_camera_and_the_socket(camera_page, api):
    page = camera_page
    user = register(api)
    # Keep a handle on every stream the page opens, to see that its tracks end.
    page.add_init_script(
        "const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices); window.streams = [];"
        " navigator.mediaDevices.getUserMedia = async (wanted) => { const stream = await open(wanted); window.streams.push(stream); return stream; };"
    )
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    log_in(page, user["email"])
    page.goto("/#/live")
    page.get_by_role("button", name="Start camera").click()
    page.wait_for_function("() => Number(document.querySelector('.live-stage').dataset.replies) > 0", timeout=LIVE_TIMEOUT_MS)
    nav(page, "History")
    page.get_by_role("heading", level=1, name="History").wait_for()
    page.wait_for_function("() => window.streams.length === 1 && window.streams[0].getTracks().every(track => track.readyState === 'ended')")
    for _ in range(50):
        if sockets[0].is_closed():
            break
        page.wait_for_timeout(100)
    assert len(sockets) == 1 and sockets[0].is_closed(), "the socket closes with the page"


def test_live_socket_refused_ends_the_session(camera_page, api):
    """A token the server refuses closes the socket with 1008: the app's session-end path, as a refused
    refresh does (the login page says so, and leads back to the live page)."""
    page = camera_page
    user = register(api)
    log_in(page, user["email"])

    def forge_token(route):
        server = route.connect_to_server()

        def from_page(message):
            if isinstance(message, str) and "token" in message:
                server.send(json.dumps({"token": "forged.token.value"}))
            else:
                server.send(message)

        route.on_message(from_page)

    page.route_web_socket(re.compile(r".*/api/v1/live$"), forge_token)
    page.goto("/#/live")
    page.get_by_role("button", name="Start camera").click()
    page.get_by_role("heading", level=1, name="Log in").wait_for(timeout=LIVE_TIMEOUT_MS)
    page.get_by_text("Your session has ended. Please log in again.").wait_for()


def test_camera_denied_is_said_plainly(page, api):
    user = register(api)
    page.add_init_script("navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));")
    log_in(page, user["email"])
    page.goto("/#/live")
    page.get_by_role("button", name="Start camera").click()
    page.get_by_role("alert").filter(has_text="Camera access was denied.").wait_for()
    assert page.get_by_role("button", name="Start camera").is_enabled()
    assert page.get_by_role("button", name="Save snapshot").is_disabled()
    screenshot(page, "25-live-camera-denied")


def test_media_pages_fit_a_phone(page, api):
    user = register(api)
    page.set_viewport_size({"width": 375, "height": 812})
    log_in(page, user["email"])
    for name, route in [("batch", "#/batch"), ("video", "#/video"), ("live", "#/live")]:
        page.goto(f"/{route}")
        page.locator("main h1").wait_for()
        page.wait_for_function("() => !document.querySelector('main [aria-busy]')")
        assert_fits_and_labelled(page, route)
        screenshot(page, f"26-phone-{name}")
