"""The operators' console (models, training, users) in a real browser, on a platform of its own (a copy
of the model repository, a tiny synthetic dataset): see conftest's console_platform."""
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, CONSOLE_DATASET, admin_headers, fail_on_alert, log_in, register, screenshot
from tests.e2e.test_frontend import assert_fits_and_labelled

JOB_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def platform_url(console_platform):
    """This module's tests (and the page and api fixtures they use) run on the console's own platform."""
    return console_platform["url"]


@pytest.fixture
def admin(api, console_platform):
    return {"password": console_platform["admin_password"], "headers": admin_headers(api, console_platform["admin_password"])}


def log_in_admin(page, admin) -> None:
    log_in(page, ADMIN_EMAIL, admin["password"])


def console_nav(page, name: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", level=1, name=name).wait_for()


def served(api, admin, name="fer_resnet18") -> int | None:
    models = api.get("/models", headers=admin["headers"]).json()["models"]
    return next((m["version"] for m in models if m["name"] == name and m["promoted"]), None)


def test_a_user_sees_no_console_and_is_told_it_needs_an_administrator(page, api):
    user = register(api)
    log_in(page, user["email"])
    main_nav = page.get_by_role("navigation", name="Main")
    main_nav.get_by_role("link", name="Account").wait_for()
    assert main_nav.get_by_role("link", name="Console").count() == 0
    assert page.get_by_role("link", name=re.compile("console", re.I)).count() == 0
    for route in ("#/console", "#/console/models", "#/console/training", "#/console/training/some-job", "#/console/users"):
        page.goto(f"/{route}")
        page.get_by_role("heading", level=1, name="This page needs an administrator").wait_for()
        page.get_by_role("alert").filter(has_text="for administrators only").wait_for()
    screenshot(page, "30-console-needs-admin")
    # The API says the same whatever the browser shows.
    assert api.get("/admin/users", headers=user["headers"]).status_code == 403


def test_models_figures_comparison_promote_and_rollback(page, api, admin):
    log_in_admin(page, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Console").click()
    page.get_by_role("heading", level=1, name="Operators' console").wait_for()
    page.get_by_role("link", name=re.compile("^Models")).click()
    page.get_by_role("heading", level=1, name="Models").wait_for()

    models = {m["version"]: m for m in api.get("/models", headers=admin["headers"]).json()["models"] if m["name"] == "fer_resnet18"}
    assert {1, 2} <= set(models), models
    for version in (1, 2):
        card = page.locator(f"article[data-version='{version}']")
        accuracy = models[version]["metadata"]["metrics"]["PrivateTest"]["accuracy"]
        assert f"{accuracy * 100:.1f}%" in card.locator("dl").inner_text()
        assert "Epochs trained" in card.inner_text()
        assert card.locator(".bars li").count() == 7
    before = served(api, admin)
    assert page.locator(".serving-now").inner_text() == f"Serving now: version {before}"

    # The confusion matrix (fetched with the token) and the card (a sandboxed frame), or what is missing.
    v2 = page.locator("article[data-version='2']")
    v2.get_by_text("Confusion matrix", exact=True).click()
    image = v2.locator(".matrix img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.get_attribute("src").startswith("blob:")
    v2.get_by_text("Model card", exact=True).click()
    frame = v2.locator("iframe.markdown-frame")
    frame.wait_for()
    assert frame.get_attribute("sandbox") == ""
    page.frame_locator("article[data-version='2'] iframe.markdown-frame").get_by_role("heading", name=re.compile("Model card")).wait_for()
    v1 = page.locator("article[data-version='1']")
    v1.get_by_text("Model card", exact=True).click()
    v1.get_by_text("This version has no model card.").wait_for()

    # Two versions side by side: accuracy, macro-F1 and recall per class, the difference in words.
    compare = page.locator("section.compare")
    compare.get_by_label("Version A").select_option("1")
    compare.get_by_label("Version B").select_option("2")
    rows = compare.locator("table tbody tr")
    assert rows.count() == 2 + 7
    gain = (models[2]["metadata"]["metrics"]["PrivateTest"]["accuracy"] - models[1]["metadata"]["metrics"]["PrivateTest"]["accuracy"]) * 100
    accuracy_row = rows.filter(has=page.get_by_role("rowheader", name="Test accuracy"))
    assert accuracy_row.locator("td.diff").inner_text().endswith(f"+{gain:.1f} points, better")
    assert compare.locator("td.diff[data-diff=better]").count() >= 1
    compare.get_by_label("Version A").select_option("2")
    compare.get_by_label("Version B").select_option("1")
    assert accuracy_row.locator("td.diff").inner_text().endswith("worse")
    compare.scroll_into_view_if_needed()
    screenshot(page, "31-console-models")

    # Promote the version that does not serve: a dialog says what happens; Cancel changes nothing.
    other = 1 if before == 2 else 2
    target = page.locator(f"article[data-version='{other}']")
    target.get_by_role("button", name=f"Promote version {other}…").click()
    dialog = page.get_by_role("dialog", name=f"Promote version {other}?")
    dialog.wait_for()
    assert "for every user" in dialog.inner_text()
    screenshot(page, "32-console-promote-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    assert served(api, admin) == before
    target.get_by_role("button", name=f"Promote version {other}…").click()
    page.get_by_role("dialog").get_by_role("button", name=f"Promote version {other}").click()
    page.locator(".notice.success").filter(has_text=f"Version {other} of fer_resnet18 now serves.").wait_for(timeout=150_000)
    assert served(api, admin) == other
    assert page.locator(".serving-now").inner_text() == f"Serving now: version {other}"

    # Roll back: the version before serves again.
    page.get_by_role("button", name="Roll back…").click()
    dialog = page.get_by_role("dialog", name="Roll back fer_resnet18?")
    assert "version promoted before it serves again" in dialog.inner_text()
    dialog.get_by_role("button", name="Roll back").click()
    page.locator(".notice.success").filter(has_text=f"Rolled back: version {before} of fer_resnet18 serves again.").wait_for(timeout=150_000)
    assert served(api, admin) == before
    fail_on_alert(page)
    screenshot(page, "33-console-rolled-back")


def test_training_form_errors_a_job_followed_live_and_cancel(page, api, admin, console_platform):
    log_in_admin(page, admin)
    page.goto("/#/console/training")
    page.get_by_role("heading", level=1, name="Training").wait_for()
    form = page.locator("form.train-form")

    # A dataset that is not under the data root: said at the field, which gets focus.
    form.get_by_label("Recipe").fill("jaffe_resnet18")
    form.get_by_label("Dataset").fill("nowhere/labels.csv")
    form.get_by_label("Epochs").fill("2")
    form.get_by_role("button", name="Start training").click()
    dataset_error = form.locator("#train-dataset-error")
    dataset_error.wait_for()
    assert dataset_error.inner_text().startswith("Dataset not found: nowhere/labels.csv under ")
    assert form.get_by_label("Dataset").get_attribute("aria-invalid") == "true"
    assert page.evaluate("() => document.activeElement.id") == "train-dataset"
    form.get_by_role("alert").filter(has_text="The job was not started: please correct the marked field.").wait_for()

    # An override out of range, and an unknown one in the free rows: each at its own field.
    form.get_by_label("Dataset").fill(CONSOLE_DATASET if console_platform["own"] else "jaffe/labels.csv")
    form.get_by_label("Epochs").fill("0")
    form.get_by_role("button", name="Start training").click()
    form.locator("#train-epochs-error").filter(has_text="Override epochs: must be an integer >= 1 and <= 1000, not 0").wait_for()
    form.get_by_label("Epochs").fill("2")
    form.get_by_role("button", name="Add a setting").click()
    form.get_by_label("Setting 1", exact=True).fill("lr")
    form.get_by_label("Value 1", exact=True).fill("0.1")
    form.get_by_role("button", name="Start training").click()
    form.locator(".override-row .field-error").filter(has_text="Override lr: not a tunable recipe field").wait_for()
    assert form.locator("#train-epochs-error").is_hidden()
    screenshot(page, "34-console-training-errors")

    if not console_platform["own"]:
        pytest.skip("a real training job runs only on the console's own platform (its synthetic dataset)")

    # A job to cancel: the dialog, then its status.
    form.get_by_role("button", name="Remove setting 1").click()
    form.get_by_label("Recipe").fill("fer2013_resnet18_cpu")
    form.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", level=1, name="Training job").wait_for()
    page.get_by_role("button", name="Cancel job…").click()
    dialog = page.get_by_role("dialog", name="Cancel this training job?")
    dialog.get_by_role("button", name="Cancel the job").click()
    page.locator(".job-status[data-status=cancelled]").wait_for(timeout=60_000)
    assert page.get_by_role("button", name="Cancel job…").is_hidden()

    # A real job, small: followed to the end with its curve and log, then found in the list with its version.
    page.goto("/#/console/training")
    form.get_by_label("Recipe").fill("fer2013_resnet18_cpu")
    form.get_by_label("Dataset").fill(CONSOLE_DATASET)
    form.get_by_label("Epochs").fill("3")
    form.get_by_label("Batch size").fill("32")
    form.get_by_label("Learning rate").fill("0.05")
    for n, (key, value) in enumerate([("model.stem", "standard"), ("num_threads", "1"), ("augment.flip", "false")], start=1):
        form.get_by_role("button", name="Add a setting").click()
        form.get_by_label(f"Setting {n}", exact=True).fill(key)
        form.get_by_label(f"Value {n}", exact=True).fill(value)
    form.get_by_role("button", name="Start training").click()
    page.get_by_role("heading", level=1, name="Training job").wait_for()
    job_id = page.locator("[data-job-id]").get_attribute("data-job-id")
    job = api.get(f"/training-jobs/{job_id}", headers=admin["headers"]).json()
    assert job["overrides"] == {"epochs": 3, "batch_size": 32, "optim.lr": 0.05, "model.stem": "standard", "num_threads": 1, "augment.flip": False}
    # The curve grows while it runs.
    page.locator("#curve-summary").filter(has_text="After epoch 1").wait_for(timeout=JOB_TIMEOUT_MS)
    screenshot(page, "35-console-training-running")
    finished = page.locator(".job-status[data-status=succeeded], .job-status[data-status=failed]")
    finished.wait_for(timeout=JOB_TIMEOUT_MS)
    status = page.locator(".job-status")
    assert status.get_attribute("data-status") == "succeeded", f"{status.inner_text()}: {page.locator('.job-message').inner_text()}\n{page.locator('pre.log').inner_text()[-2000:]}"
    assert page.locator("#job-progress-label").inner_text().strip() == "Epoch 3 of 3"
    assert page.locator("#curve-summary").inner_text().startswith("After epoch 3 of 3: training loss ")
    drawn = page.evaluate("""() => [...document.querySelectorAll('canvas.curve')].map(c => {
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let coloured = 0;
        for (let i = 0; i < data.length; i += 4) if (data[i + 3] && Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 50) coloured++;
        return coloured; })""")
    assert all(count > 50 for count in drawn), drawn
    page.locator("pre.log").filter(has_text="training evaluate").wait_for()
    version = api.get(f"/training-jobs/{job_id}", headers=admin["headers"]).json()["model_version"]
    assert version and version >= 3
    page.get_by_role("link", name=f"version {version} of fer_resnet18").wait_for()
    screenshot(page, "36-console-training-done")

    page.get_by_role("link", name="All training jobs").click()
    row = page.locator(f"tr[data-job='{job_id}']")
    assert "Succeeded" in row.inner_text()
    row.get_by_role("link", name=f"Version {version}").click()
    page.get_by_role("heading", level=1, name="Models").wait_for()
    made = page.locator(f"article[data-version='{version}']")
    made.wait_for()
    assert "Epochs trained" in made.inner_text() and "3 (best at epoch" in made.locator("dl").inner_text()
    screenshot(page, "37-console-new-version")


def test_users_search_role_disable_and_the_last_admin(page, api, admin):
    person = register(api, display_name="Ada Console")
    log_in_admin(page, admin)
    page.goto("/#/console/users")
    page.get_by_role("heading", level=1, name="Users").wait_for()
    page.get_by_label("Find an account").fill(person["email"][:14])
    row = page.locator(f"tr[data-user='{person['email']}']")
    row.wait_for()
    page.wait_for_function("() => document.querySelectorAll('#users-table tbody tr').length === 1")
    assert "Ada Console" in row.inner_text()

    # Role: the select asks first; Cancel puts it back.
    role = row.get_by_label(f"Role of {person['email']}")
    role.select_option("admin")
    page.get_by_role("dialog", name="Make Ada Console an administrator?").get_by_role("button", name="Cancel").click()
    expect(role).to_have_value("user")  # the dialog's close event resets it a task later
    role.select_option("admin")
    page.get_by_role("dialog").get_by_role("button", name="Make administrator").click()
    page.get_by_role("status").filter(has_text=f"{person['email']} is now an administrator.").first.wait_for()
    assert api.get("/users/me", headers=person["headers"]).json()["role"] == "admin"
    row.get_by_label(f"Role of {person['email']}").select_option("user")
    page.get_by_role("dialog").get_by_role("button", name="Make user").click()
    page.get_by_role("status").filter(has_text=f"{person['email']} is now a user.").first.wait_for()
    assert api.get("/users/me", headers=person["headers"]).json()["role"] == "user"

    # Disable: that account's tokens stop working at once.
    row.get_by_role("button", name=f"Disable {person['email']}").click()
    dialog = page.get_by_role("dialog", name="Disable Ada Console?")
    assert "logged out everywhere" in dialog.inner_text()
    dialog.get_by_role("button", name="Disable the account").click()
    page.locator(f"tr[data-user='{person['email']}'][data-disabled=true]").wait_for()
    assert api.get("/users/me", headers=person["headers"]).status_code == 401
    screenshot(page, "38-console-users")
    page.locator(f"tr[data-user='{person['email']}']").get_by_role("button", name=f"Enable {person['email']}").click()
    page.get_by_role("dialog").get_by_role("button", name="Enable the account").click()
    page.locator(f"tr[data-user='{person['email']}'][data-disabled=false]").wait_for()

    # The last administrator cannot be demoted: the 409 in words, the select back as it was.
    page.get_by_label("Find an account").fill(ADMIN_EMAIL)
    me = page.locator(f"tr[data-user='{ADMIN_EMAIL}']")
    me.wait_for()
    page.wait_for_function("() => document.querySelectorAll('#users-table tbody tr').length === 1")
    me.get_by_label(f"Role of {ADMIN_EMAIL}").select_option("user")
    page.get_by_role("dialog").get_by_role("button", name="Make user").click()
    page.get_by_role("alert").filter(has_text=f"Not changed: {ADMIN_EMAIL} is the last active administrator.").wait_for()
    expect(me.get_by_label(f"Role of {ADMIN_EMAIL}")).to_have_value("admin")
    assert api.get("/users/me", headers=admin["headers"]).json()["role"] == "admin"
    screenshot(page, "39-console-last-admin")


def test_console_pages_at_phone_width(page, api, admin):
    log_in_admin(page, admin)
    page.set_viewport_size({"width": 375, "height": 812})
    for name, route in [("models", "#/console/models"), ("training", "#/console/training"), ("users", "#/console/users")]:
        page.goto(f"/{route}")
        page.locator("main h1").wait_for()
        page.wait_for_function("() => !document.querySelector('main[aria-busy], figure[aria-busy]')")
        assert_fits_and_labelled(page, route)
        screenshot(page, f"40-phone-console-{name}")
