"""The web frontend in a real browser against the running platform: the whole use case and what goes wrong."""
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, TIMEZONE, log_in, register, screenshot, unique_email

CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
ANALYSIS_TIMEOUT_MS = 120_000
REPORT_TIMEOUT_MS = 120_000


def session_storage(page) -> dict:
    return page.evaluate("() => Object.fromEntries(Object.entries(sessionStorage))")


def focused_heading(page) -> str:
    return page.evaluate("() => document.activeElement.tagName + ':' + document.activeElement.textContent")


def expect_result(page, scope) -> list[dict]:
    """Checks the result shown in `scope` (faces, 7 scores each, the annotated image) and returns the faces as shown."""
    scope.locator("img.annotated").wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=scope.locator("img.annotated").element_handle())
    faces = scope.locator("ol.faces > li")
    assert faces.count() >= 1, "the astronaut photo has a face"
    shown = []
    for i in range(faces.count()):
        face = faces.nth(i)
        title = face.get_by_role("heading").text_content()
        label = re.match(r"Face \d+: (\w+)", title).group(1)
        assert label in CLASSES
        rows = face.locator("ul.bars > li")
        assert rows.count() == 7
        names = [rows.nth(j).locator(".name").inner_text().lower() for j in range(7)]
        assert names == CLASSES
        values = [float(rows.nth(j).locator(".value").inner_text().rstrip("%")) for j in range(7)]
        assert abs(sum(values) - 100) < 1.5, values
        # The highlighted bar is the face's label, and it is the largest score.
        assert face.locator("li.top .name").inner_text().lower() == label
        assert values[CLASSES.index(label)] == max(values)
        width = face.locator("li.top .fill").evaluate("el => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width")
        assert abs(width * 100 - values[CLASSES.index(label)]) < 2
        shown.append({"label": label, "values": values})
    return shown


def wait_for_result(page):
    """The analysis result, or a failure with the words the page showed instead."""
    result = page.locator(".output")
    heading = result.get_by_role("heading", name="Result")
    refused = page.locator("form").get_by_role("alert")
    heading.or_(refused).wait_for(timeout=ANALYSIS_TIMEOUT_MS)
    if refused.is_visible():
        pytest.fail(f"the analysis failed in the browser: {refused.inner_text()}")
    return result


def download_report(page, scope, fmt: str) -> bytes:
    with page.expect_download(timeout=REPORT_TIMEOUT_MS) as download_info:
        scope.get_by_role("button", name=f"Download {fmt.upper()} report").click()
    download = download_info.value
    assert download.suggested_filename.endswith(f".{fmt}")
    path = download.path()
    assert path is not None, download.failure()
    return open(path, "rb").read()


def test_whole_use_case(page, photo, platform_url):
    email = unique_email("ada")
    requests = []
    page.on("request", lambda request: requests.append((request.url, request.headers.get("authorization", ""))))

    # Open the app: not logged in, so the login page.
    page.goto("/")
    page.wait_for_url("**/#/login")
    page.get_by_role("heading", level=1, name="Log in").wait_for()
    screenshot(page, "01-login")

    # Register.
    page.get_by_role("link", name="Create an account").click()
    page.get_by_role("heading", level=1, name="Create an account").wait_for()
    assert focused_heading(page) == "H1:Create an account", "focus moves to the new page's heading"
    page.get_by_label("Display name").fill("Ada")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat the password").fill(PASSWORD)
    screenshot(page, "02-register")
    page.get_by_role("button", name="Create account").click()

    # Log in with the keyboard alone: the email is already filled in.
    page.get_by_text("Your account is ready. Log in to continue.").wait_for()
    assert page.get_by_label("Email").input_value() == email
    page.get_by_label("Password", exact=True).focus()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")

    # The menu.
    page.get_by_role("heading", level=1, name="Hello, Ada").wait_for()
    page.get_by_text("You have run 0 analyses so far.").wait_for()
    assert focused_heading(page) == "H1:Hello, Ada"
    assert "token" not in page.url
    stored = session_storage(page)
    assert list(stored) == ["fer.refresh_token"], "only the refresh token is stored, and only per tab"
    assert page.evaluate("() => localStorage.length") == 0
    screenshot(page, "03-menu")

    # Account: see, rename, change the password (a wrong current password first).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("heading", level=1, name="Your account").wait_for()
    details = page.locator("dl.details")
    assert details.locator("[data-field=email]").inner_text() == email
    assert details.locator("[data-field=computations]").inner_text() == "0"
    name_form = page.locator("form", has=page.get_by_role("heading", name="Display name"))
    name_form.get_by_label("Display name").fill("Ada Lovelace")
    name_form.get_by_role("button", name="Save name").click()
    name_form.get_by_text("Your display name is saved.").wait_for()
    assert details.locator("[data-field=display_name]").inner_text() == "Ada Lovelace"

    password_form = page.locator("form", has=page.get_by_role("heading", name="Change password"))
    new_password = "Analytical-Engine-42"
    password_form.get_by_label("Current password").fill("not-my-password-1")
    password_form.get_by_label("New password", exact=True).fill(new_password)
    password_form.get_by_label("Repeat the new password").fill(new_password)
    password_form.get_by_role("button", name="Change password").click()
    password_form.get_by_role("alert").filter(has_text="Your current password is wrong.").wait_for()
    password_form.get_by_label("Current password").fill(PASSWORD)
    password_form.get_by_role("button", name="Change password").click()
    password_form.get_by_text("Your password is changed.").wait_for()
    assert httpx.post(f"{platform_url}/api/v1/auth/token", data={"username": email, "password": new_password}).status_code == 200
    screenshot(page, "04-account")

    # Analysis: choose the photo, see the preview, add notes, run.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Analyse").click()
    page.get_by_role("heading", level=1, name="Analyse a photo").wait_for()
    run = page.get_by_role("button", name="Analyse", exact=True)
    assert run.is_disabled(), "nothing to analyse before a file is chosen"
    page.get_by_label("Choose a photo").set_input_files(str(photo))
    preview = page.get_by_role("img", name="Preview of astronaut.png")
    preview.wait_for()
    assert preview.evaluate("img => img.naturalWidth") == 512
    page.get_by_label("Notes (optional)").fill("Mission portrait")
    run.click()
    result = wait_for_result(page)
    faces = expect_result(page, result)
    screenshot(page, "05-analysis-result")

    # Reports: PDF and JSON, each prepared on the server and downloaded with the token.
    pdf = download_report(page, result, "pdf")
    assert pdf.startswith(b"%PDF-")
    report = json.loads(download_report(page, result, "json"))
    prediction_id = result.locator("[data-prediction-id]").get_attribute("data-prediction-id")
    assert prediction_id in json.dumps(report)
    result.get_by_text("JSON report ready").wait_for()
    screenshot(page, "06-reports")

    # History: the analysis is there with its notes; open it again.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    page.get_by_role("heading", level=1, name="History").wait_for()
    entry = page.locator("ol.history > li").filter(has_text="Mission portrait")
    assert entry.count() == 1
    screenshot(page, "07-history")
    entry.get_by_role("link").click()
    page.wait_for_url(f"**/#/results/{prediction_id}")
    page.get_by_role("heading", level=1, name="Analysis result").wait_for()
    assert expect_result(page, page.locator("main")) == faces
    page.get_by_text("Mission portrait").wait_for()
    screenshot(page, "08-past-result")

    # The account now counts the analysis.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Menu").click()
    page.get_by_text("You have run 1 analysis so far.").wait_for()

    # Log out: tokens gone from the tab and revoked on the server.
    refresh_token = session_storage(page)["fer.refresh_token"]
    page.get_by_role("button", name="Log out").click()
    page.get_by_text("You have logged out.").wait_for()
    assert session_storage(page) == {}
    assert httpx.post(f"{platform_url}/api/v1/auth/refresh", json={"refresh_token": refresh_token}).status_code == 401
    page.goto("/#/account")
    page.get_by_role("heading", level=1, name="Log in").wait_for()

    # Tokens travelled only in headers and bodies, never in an address.
    access_tokens = {auth.removeprefix("Bearer ") for _, auth in requests if auth}
    assert access_tokens, "API calls carry the access token"
    for url, _ in requests:
        assert not any(token in url for token in access_tokens | {refresh_token}), url


def test_wrong_password_is_said_plainly(page, api):
    user = register(api)
    page.goto("/#/login")
    page.get_by_label("Email").fill(user["email"])
    page.get_by_label("Password", exact=True).fill("Wrong-password-1")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    alert.filter(has_text="Wrong email or password.").wait_for()
    assert page.url.endswith("#/login")
    assert page.get_by_label("Password", exact=True).input_value() == ""
    assert page.evaluate("() => document.activeElement.name") == "password", "focus returns to the password"
    assert session_storage(page) == {}
    screenshot(page, "09-wrong-password")


def test_too_many_attempts_is_said_plainly(page, api):
    user = register(api)
    page.goto("/#/login")
    page.get_by_label("Email").fill(user["email"])
    for _ in range(6):  # the account allows 5 failures per window
        page.get_by_label("Password", exact=True).fill("Wrong-password-1")
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("alert").wait_for()
        page.get_by_role("button", name="Log in").wait_for(state="visible")
        page.wait_for_function("() => !document.querySelector('form[aria-busy]')")
    page.get_by_role("alert").filter(has_text="Too many attempts. Please wait").wait_for()


def test_non_image_upload_is_refused_in_words(page, api, tmp_path):
    user = register(api)
    log_in(page, user["email"])
    fake = tmp_path / "holiday.png"
    fake.write_text("these are words, not pixels\n" * 20)
    page.goto("/#/analyze")
    # Dropped on the drop zone, as a person would drag it from their files.
    dropped = page.evaluate_handle(
        "text => { const data = new DataTransfer(); data.items.add(new File([text], 'holiday.png', {type: 'image/png'})); return data; }",
        fake.read_text(),
    )
    page.locator(".dropzone").dispatch_event("dragover", {"dataTransfer": dropped})
    page.locator(".dropzone").dispatch_event("drop", {"dataTransfer": dropped})
    page.get_by_text("holiday.png (560 bytes)").wait_for()
    page.get_by_text("No preview: the browser cannot show this file as an image.").wait_for()
    page.get_by_role("button", name="Analyse", exact=True).click()
    alert = page.get_by_role("alert")
    alert.filter(has_text="This file cannot be analysed.").wait_for(timeout=ANALYSIS_TIMEOUT_MS)
    assert "Traceback" not in alert.inner_text()
    assert page.locator(".output").inner_text() == ""
    screenshot(page, "10-not-an-image")


def upload(api, user: dict, photo, notes: str = "") -> str:
    """Analyses the photo through the API as `user`; returns the prediction id."""
    with photo.open("rb") as image:
        created = api.post("/predictions", headers=user["headers"], files={"file": (photo.name, image, "image/png")}, data={"notes": notes})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_photo_without_faces_says_so(page, api, tmp_path):
    from PIL import Image

    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 170)).save(blank)
    user = register(api)
    log_in(page, user["email"])
    page.goto("/#/analyze")
    page.get_by_label("Choose a photo").set_input_files(str(blank))
    page.get_by_role("button", name="Analyse", exact=True).click()
    result = wait_for_result(page)
    result.get_by_text("No face found.").wait_for()
    assert result.locator("p.notice.info").inner_text().strip(), "the service's remark is shown"
    assert result.locator("ol.faces").count() == 0
    assert result.get_by_role("button", name="Download PDF report").is_enabled()


def test_one_face_mode_and_the_uncertain_badge(page, api, photo):
    """Ticking "The photo is one face" sends mode=face: one face, the whole photo its box. A face the
    model is unsure of shows a visible "uncertain" badge: whatever the served version says of this photo,
    the stored result is marked uncertain on its way to the result page, as a version's threshold would.
    (The upload itself is not intercepted: Chromium does not hand a multipart file body to a route.)"""
    user = register(api)
    log_in(page, user["email"])
    page.goto("/#/analyze")
    page.get_by_label("Choose a photo").set_input_files(str(photo))
    page.get_by_label("The photo is one face").check()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/predictions") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Analyse", exact=True).click()
    result = wait_for_result(page)
    body = answer.value.json()
    assert [face["box"] for face in body["faces"]] == [[0, 0, 512, 512]]
    assert result.locator("ol.faces > li").count() == 1
    assert "one face" in result.locator("p.notice.info").inner_text()

    def mark_uncertain(route):
        response = route.fetch()
        stored = response.json()
        for face in stored.get("faces", []):
            face["uncertain"] = True
        route.fulfill(response=response, json=stored)

    page.route(f"**/api/v1/predictions/{body['id']}", mark_uncertain)
    page.goto(f"/#/results/{body['id']}")
    faces = page.locator("ol.faces > li")
    faces.first.wait_for()
    assert faces.count() == 1
    badge = faces.first.locator(".badge.uncertain")
    assert badge.is_visible() and badge.inner_text().strip() == "uncertain"
    assert "uncertain" in faces.first.get_by_role("heading").text_content()
    assert "(uncertain)" in page.locator("figcaption").inner_text()
    screenshot(page, "14-uncertain-face")


def test_another_users_result_is_not_found(page, api, photo):
    owner = register(api, "Owner")
    foreign_id = upload(api, owner, photo, notes="private")

    intruder = register(api, "Intruder")
    log_in(page, intruder["email"])
    page.goto(f"/#/results/{foreign_id}")
    page.get_by_role("heading", level=1, name="Result not found").wait_for()
    assert page.locator("ol.faces").count() == 0
    assert "private" not in page.locator("main").inner_text()
    screenshot(page, "11-other-users-result")


def test_history_pages(page, api, photo):
    user = register(api)
    for i in range(11):  # one more than a page
        upload(api, user, photo, notes=f"photo {i}")
    log_in(page, user["email"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    page.get_by_text("11 analyses in total.").wait_for()
    items = page.locator("ol.history > li")
    assert items.count() == 10
    assert "photo 10" in items.first.inner_text(), "newest first"
    shown = datetime.strptime(" ".join(items.first.locator("strong").inner_text().split()), "%b %d, %Y, %I:%M %p")
    now = datetime.now(ZoneInfo(TIMEZONE)).replace(tzinfo=None)
    assert abs(now - shown) < timedelta(minutes=5), f"shown {shown}, local time {now}"
    assert page.get_by_role("link", name="Newer").count() == 0
    page.get_by_role("link", name="Older").click()
    page.get_by_role("link", name="Newer").wait_for()
    assert items.count() == 1
    assert "photo 0" in items.first.inner_text()
    assert page.get_by_role("link", name="Older").count() == 0
    page.get_by_role("link", name="Newer").click()
    page.wait_for_url("**/#/history")
    page.locator("ol.history > li").nth(9).wait_for()
    assert "photo 10" in items.first.inner_text()


def test_session_survives_reload_and_refreshes_before_expiry(page, api):
    user = register(api)
    page.clock.install()
    log_in(page, user["email"])
    first = session_storage(page)["fer.refresh_token"]

    # A reload keeps the person logged in (the refresh token buys a new access token).
    page.reload()
    page.get_by_role("heading", level=1, name="Hello").wait_for()
    second = session_storage(page)["fer.refresh_token"]
    assert second != first, "refresh tokens rotate on use"

    # Before the access token expires (15 minutes), a timer renews it without any request of ours.
    with page.expect_request("**/api/v1/auth/refresh"):
        page.clock.run_for("14:30")
    page.wait_for_function("old => sessionStorage.getItem('fer.refresh_token') !== old", arg=second)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("heading", level=1, name="Your account").wait_for()


def test_revoked_session_ends_with_a_notice(page, api, platform_url):
    user = register(api)
    log_in(page, user["email"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="History").click()
    page.get_by_role("heading", level=1, name="History").wait_for()
    # Logged out elsewhere (the same login revoked): the tab finds out on its next refresh.
    revoked = httpx.post(f"{platform_url}/api/v1/auth/logout", json={"refresh_token": session_storage(page)["fer.refresh_token"]})
    assert revoked.status_code == 204
    page.reload()
    page.get_by_role("heading", level=1, name="Log in").wait_for()
    page.get_by_text("Your session has ended. Please log in again.").wait_for()
    assert session_storage(page) == {}
    # Logging in again leads back to where the person was.
    page.get_by_label("Email").fill(user["email"])
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", level=1, name="History").wait_for()


def test_expired_access_token_is_refreshed_once_and_retried(page, api):
    user = register(api)
    log_in(page, user["email"])
    rejected = []

    def reject_first(route):
        if not rejected:
            rejected.append(route.request.url)
            route.fulfill(status=401, json={"detail": "invalid access token: expired"})
        else:
            route.continue_()

    page.route("**/api/v1/users/me", reject_first)
    with page.expect_request("**/api/v1/auth/refresh"):
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("heading", level=1, name="Your account").wait_for()
    assert len(rejected) == 1
    assert page.locator("[data-field=email]").inner_text() == user["email"]


def test_service_down_is_said_plainly(page, api):
    user = register(api)
    log_in(page, user["email"])
    page.route(
        "**/api/v1/users/me",
        lambda route: route.fulfill(status=503, headers={"Retry-After": "5"}, json={"detail": "a service the platform depends on is unavailable; please retry shortly"}),
    )
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("heading", level=1, name="This page could not be loaded").wait_for()
    page.get_by_role("alert").filter(has_text="unavailable right now. Please try again in a moment.").wait_for()
    screenshot(page, "12-service-down")
    page.unroute("**/api/v1/users/me")
    page.get_by_role("button", name="Try again").click()
    page.get_by_role("heading", level=1, name="Your account").wait_for()


def focused(page) -> str:
    return page.evaluate("() => `${document.activeElement.tagName}:${document.activeElement.getAttribute('type') || ''}:${document.activeElement.textContent.trim()}`")


def test_keyboard_alone_runs_an_analysis(page, api, photo):
    user = register(api)
    log_in(page, user["email"])
    # Focus sits on the menu's heading, so the first Tab reaches the first choice on the page.
    page.keyboard.press("Tab")
    assert focused(page).startswith("A::Analyse a photo")
    page.keyboard.press("Enter")
    page.get_by_role("heading", level=1, name="Analyse a photo").wait_for()
    assert focused(page) == "H1::Analyse a photo"
    page.keyboard.press("Tab")
    assert focused(page) == "INPUT:file:"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(photo))
    page.keyboard.press("Tab")
    page.keyboard.type("typed with the keyboard")
    page.keyboard.press("Tab")
    assert focused(page) == "INPUT:checkbox:", "then 'The photo is one face'"
    page.keyboard.press("Space")
    assert page.get_by_label("The photo is one face").is_checked()
    page.keyboard.press("Space")  # left off: the photo is searched for faces
    page.keyboard.press("Tab")
    assert focused(page) == "BUTTON:submit:Analyse"
    page.keyboard.press("Enter")
    wait_for_result(page)
    assert focused(page) == "H2::Result", "focus moves to the result"


def test_every_page_is_readable_at_phone_width(page, api, photo):
    user = register(api)
    prediction_id = upload(api, user, photo)
    page.set_viewport_size({"width": 375, "height": 812})
    for name, route in [("login", "#/login"), ("register", "#/register")]:
        page.goto(f"/{route}")
        page.locator("main h1").wait_for()
        assert_fits_and_labelled(page, route)
        screenshot(page, f"13-phone-{name}")
    log_in(page, user["email"])
    for name, route in [("menu", "#/"), ("account", "#/account"), ("analyze", "#/analyze"), ("history", "#/history"), ("result", f"#/results/{prediction_id}")]:
        page.goto(f"/{route}")
        page.locator("main h1").wait_for()
        page.wait_for_function("() => !document.querySelector('main[aria-busy], figure[aria-busy]')")
        assert_fits_and_labelled(page, route)
        screenshot(page, f"13-phone-{name}")


def assert_fits_and_labelled(page, route: str) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"{route} scrolls sideways by {overflow} px at 375 px"
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
                 .filter(el => !(el.labels?.length || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim()))
                 .map(el => el.outerHTML)"""
    )
    assert unlabelled == [], f"controls without a label on {route}: {unlabelled}"
