"""Browser tests: the platform started as `make dev` starts it, driven through Debian's Chromium by Playwright.

Install what they need with scripts/install-browser.sh. Screenshots go to test-artifacts/e2e/.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
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
    var = tmp_path_factory.mktemp("platform")
    base = Ports.free_base()
    log_path = var / "dev.out"
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
        "PYTHONUNBUFFERED": "1",
        # Every test registers from 127.0.0.1: more accounts than the per-address limit allows in an hour.
        "AUTH_MAX_REGISTRATIONS_PER_ADDRESS": "1000",
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
                _start_failure.append(f"the platform exited with {process.returncode} before it was ready:\n{_log_tail(log_path)}")
                pytest.fail(_start_failure[0], pytrace=False)
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
                last = ready.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                _start_failure.append(f"the platform was not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{_log_tail(log_path)}")
                pytest.fail(_start_failure[0], pytrace=False)
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


@pytest.fixture
def page(browser, platform_url):
    """A fresh browser profile per test; an uncaught script error anywhere fails the test."""
    # A zone far from UTC, so a time shown in the wrong zone is caught.
    context = browser.new_context(
        base_url=platform_url, viewport={"width": 1100, "height": 900}, accept_downloads=True, locale="en-US", timezone_id=TIMEZONE
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


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
