"""Browser tests: the platform started as `make dev` starts it, driven through Debian's Chromium by Playwright.

Install what they need with scripts/install-browser.sh. Screenshots go to test-artifacts/e2e/.
"""
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from scripts.dev import Ports

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Below pytest-timeout's 300 s, so a platform that never gets ready fails with its log, not a bare timeout.
READY_TIMEOUT_S = float(os.environ.get("E2E_READY_TIMEOUT_S", "180"))
# pytest re-runs a failed session fixture for every test; one failed start is enough.
_start_failure: list[str] = []
PASSWORD = "Correct-horse-9"
TIMEZONE = "Asia/Kolkata"


def _log_tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"


@pytest.fixture(scope="package")
def platform_url(tmp_path_factory) -> Iterator[str]:
    """`python -m scripts.dev` (what `make dev` runs) on free ports with its own state folder.

    E2E_BASE_URL=http://127.0.0.1:8080 uses a platform that is already running instead (quicker while
    working on the pages)."""
    if os.environ.get("E2E_BASE_URL"):
        yield os.environ["E2E_BASE_URL"].rstrip("/")
        return
    if _start_failure:
        pytest.fail(_start_failure[0], pytrace=False)
    with run_platform(tmp_path_factory.mktemp("platform"), failures=_start_failure) as url:
        yield url


@contextmanager
def run_platform(var: Path, extra_env: dict[str, str] | None = None, failures: list[str] | None = None) -> Iterator[str]:
    """Starts `python -m scripts.dev --var VAR` on free ports (with `extra_env` over its settings), yields
    its URL once /readyz answers 200, and stops it. A start that fails is recorded in `failures`."""
    failures = [] if failures is None else failures
    base = Ports.free_base()
    log_path = var / "dev.out"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "PYTHONUNBUFFERED": "1",
        # Every test registers from 127.0.0.1: more accounts than the per-address limit allows in an hour.
        "AUTH_MAX_REGISTRATIONS_PER_ADDRESS": "1000",
        **(extra_env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.dev", "--var", str(var), "--port-base", str(base)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{base}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        while True:
            if process.poll() is not None:
                failures.append(f"the platform exited with {process.returncode} before it was ready:\n{_log_tail(log_path)}")
                pytest.fail(failures[0], pytrace=False)
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
                last = ready.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                failures.append(f"the platform was not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{_log_tail(log_path)}")
                pytest.fail(failures[0], pytrace=False)
            time.sleep(0.5)
        yield url
    finally:
        # scripts.dev stops its children on SIGTERM; the group kill is the backstop.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Package scope: Playwright's sync API keeps an event loop running in this thread while it is open,
# which would stop the asyncio tests collected after this package from starting theirs.
@pytest.fixture(scope="package")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: run scripts/install-browser.sh", pytrace=False)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: run scripts/install-browser.sh (apt-get install chromium)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _fresh_page(browser, platform_url: str, **context_options):
    """A page in a fresh browser profile (`context_options` added to its settings), closed after the test;
    an uncaught script error anywhere fails the test."""
    # A zone far from UTC, so a time shown in the wrong zone is caught.
    context = browser.new_context(
        base_url=platform_url, viewport={"width": 1100, "height": 900}, accept_downloads=True, locale="en-US",
        timezone_id=TIMEZONE, **context_options,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser, platform_url):
    """A fresh browser profile per test; an uncaught script error anywhere fails the test."""
    yield from _fresh_page(browser, platform_url)


def fail_on_alert(page, scope: str = "main") -> None:
    """Fails the test when `scope` shows an alert with text (an error the page reports)."""
    alert = page.locator(scope).get_by_role("alert").filter(has_text=re.compile(r"\S"))
    if alert.count() and alert.first.is_visible():
        pytest.fail(f"the page shows an error: {alert.first.inner_text()}")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def unique_email(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def api(platform_url) -> Iterator[httpx.Client]:
    """A plain HTTP client on the gateway's API, for setting up data a test needs."""
    with httpx.Client(base_url=f"{platform_url}/api/v1", timeout=60) as client:
        yield client


def register(api: httpx.Client, display_name: str = "Grace") -> dict:
    """A new account via the API: {email, password, headers}."""
    email = unique_email()
    created = api.post("/auth/register", json={"email": email, "password": PASSWORD, "display_name": display_name})
    assert created.status_code == 201, created.text
    tokens = api.post("/auth/token", data={"username": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    return {"email": email, "password": PASSWORD, "headers": {"Authorization": f"Bearer {tokens.json()['access_token']}"}}


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A real photo with a face: scikit-image's astronaut (Eileen Collins), as PNG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/#/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", level=1, name="Hello").wait_for()


@pytest.fixture(scope="package")
def fake_camera_file(tmp_path_factory) -> Path:
    """What the fake camera films: the astronaut's face moving across a grey background (Chromium loops it)."""
    from tests.fixtures.videos import write_y4m

    path = tmp_path_factory.mktemp("camera") / "astronaut.y4m"
    write_y4m(path, seconds=2.0, fps=15, size=(320, 240))
    return path


@pytest.fixture(scope="package")
def camera_browser(browser, fake_camera_file):
    """A second Chromium whose camera plays `fake_camera_file`, with the permission prompt answered yes.
    Launched from the first one's Playwright: one sync Playwright runs per thread."""
    camera = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[
            *CHROMIUM_ARGS,
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_camera_file}",
        ],
    )
    yield camera
    camera.close()


@pytest.fixture
def camera_page(camera_browser, platform_url):
    """As `page`, in the browser with the fake camera."""
    yield from _fresh_page(camera_browser, platform_url, permissions=["camera"])


# ---- the operators' console -------------------------------------------------------------------------

ADMIN_EMAIL = "admin@example.com"
# A tiny FER2013-layout dataset the console's training test trains on, under the console platform's data root.
CONSOLE_DATASET = "synthetic/fer2013.csv.gz"
_console_failure: list[str] = []


@pytest.fixture(scope="module")
def console_platform(tmp_path_factory) -> Iterator[dict]:
    """A platform of its own for the console's tests: promoting, rolling back and training change a model
    repository, so it serves a copy of models/ (never the committed folder), trains on a data root holding
    a tiny synthetic dataset (CONSOLE_DATASET) and keeps its runs in its state folder.
    {url, var, admin_password, own: False when E2E_BASE_URL names a running platform (E2E_VAR: its state
    folder, default var/)}."""
    if os.environ.get("E2E_BASE_URL"):
        var = Path(os.environ.get("E2E_VAR", ROOT / "var"))
        yield {"url": os.environ["E2E_BASE_URL"].rstrip("/"), "var": var,
               "admin_password": (var / "admin-password.txt").read_text(), "own": False}
        return
    if _console_failure:
        pytest.fail(_console_failure[0], pytrace=False)
    from training.tests.conftest import synth_faces, write_fer_csv

    # scripts.dev serves VAR/models, seeded from models/ when it starts (seed_models).
    var = tmp_path_factory.mktemp("console-platform")
    data = var / "data"
    (data / CONSOLE_DATASET).parent.mkdir(parents=True)
    images, labels = synth_faces(140, seed=3)
    write_fer_csv(data / CONSOLE_DATASET, images, labels, ["Training"] * 84 + ["PublicTest"] * 28 + ["PrivateTest"] * 28, gz=True)
    env = {
        "INFERENCE_TRAINING_DATA_DIR": str(data),
        "INFERENCE_TRAINING_WORK_DIR": str(var / "training-runs"),
        "INFERENCE_TRAINING_LOG_DIR": str(var / "training-logs"),
    }
    with run_platform(var, env, failures=_console_failure) as url:
        yield {"url": url, "var": var, "admin_password": (var / "admin-password.txt").read_text(), "own": True}


def admin_headers(api: httpx.Client, password: str) -> dict:
    tokens = api.post("/auth/token", data={"username": ADMIN_EMAIL, "password": password})
    assert tokens.status_code == 200, tokens.text
    return {"Authorization": f"Bearer {tokens.json()['access_token']}"}
