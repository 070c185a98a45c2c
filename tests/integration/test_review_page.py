"""The review page in headless Chromium: sign in, open a held instance, draw a box, release;
reject another; both decisions in the audit table. Screenshots go to test-artifacts/review-page/.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and Selenium (the
dev extra); Selenium is pointed at the system driver, so nothing is downloaded.
"""

from __future__ import annotations

import gc
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from scrubber.deid import DeidConfig
from scrubber.dicom_io.pixels import iter_frames
from tests.burned_in import NAME_BOX, hold_banner
from tests.conftest import in_ci

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")
import uvicorn  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from scrubber.server import ServerSettings, TokenBook, create_app  # noqa: E402

pytestmark = pytest.mark.slow

REVIEW = "reviewer-token-for-the-browser-test"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "review-page"


def _browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    message = "chromium and chromium-driver (Debian) are not installed; .ci/run installs them."
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _hold(quarantine: Path, name: str) -> None:
    hold_banner(quarantine, Path("ward") / name, [NAME_BOX])  # the reviewer must add the ID


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServerSettings]]:
    settings = ServerSettings(
        out=tmp_path / "out",
        quarantine=tmp_path / "out.quarantine",
        spool=tmp_path / "spool",
        deid=DeidConfig(project="PAGE"),
        secret=b"page-test-secret-0123456789abcdef",
        key_path=tmp_path / "key.sqlite",
        tokens=TokenBook.parse(f"reviewer:{REVIEW}"),
    )
    _hold(settings.quarantine, "a.dcm")
    _hold(settings.quarantine, "b.dcm")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.2)
    yield base, settings
    uv.should_exit = True
    thread.join(timeout=10)
    # Uvicorn stops with the browser's keep-alive connections still referenced, and Selenium's
    # client pool may hold one too: collect them here, quietly, rather than let the garbage
    # collector finalise them during a later test (a ResourceWarning there, an error under
    # filterwarnings=error, in whatever test happens to run next).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_reviewer_draws_a_box_releases_and_rejects(
    server: tuple[str, ServerSettings], browser: WebDriver
) -> None:
    base, settings = server
    driver = browser
    SHOTS.mkdir(parents=True, exist_ok=True)
    wait: WebDriverWait[WebDriver] = WebDriverWait(driver, 60)
    driver.get(base + "/review")
    wait.until(ec.presence_of_element_located((By.ID, "token"))).send_keys(REVIEW)
    driver.save_screenshot(str(SHOTS / "1-sign-in.png"))
    driver.find_element(By.ID, "sign-in").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items li")) == 2)
    canvas = wait.until(ec.visibility_of_element_located((By.ID, "view")))
    wait.until(lambda d: d.execute_script("return document.getElementById('view').width") > 100)
    time.sleep(0.5)  # the frame image draws onto the canvas
    driver.save_screenshot(str(SHOTS / "2-held-instance.png"))
    # draw a box over the patient ID (frame pixels 474..584 x 6..32; the preview is 1:1)
    width = driver.execute_script("return arguments[0].width", canvas)
    assert width == 640
    left, top = -canvas.size["width"] / 2, -canvas.size["height"] / 2
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(left + 472), int(top + 4)
    ).click_and_hold().move_by_offset(114, 30).release().perform()
    driver.save_screenshot(str(SHOTS / "3-box-drawn.png"))
    first_id = driver.find_elements(By.CSS_SELECTOR, "#items li")[0].get_attribute("data-id")
    driver.find_element(By.ID, "release").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items li")) == 1)
    driver.save_screenshot(str(SHOTS / "4-after-release.png"))
    released = settings.out / "reviewed" / "ward" / "a.dcm"
    ds = pydicom.dcmread(released)
    frame = next(iter_frames(ds))
    assert not frame[6:32, 4:174].any() and not frame[8:30, 476:584].any()
    assert ds.BurnedInAnnotation == "NO" and "MILLER" not in str(ds.PatientName)
    driver.find_element(By.TAG_NAME, "body").send_keys("x")
    wait.until(lambda d: d.find_element(By.ID, "empty").is_displayed())
    driver.save_screenshot(str(SHOTS / "5-queue-empty.png"))
    from scrubber.review import ReviewQueue

    audit = ReviewQueue(settings.quarantine).audit()
    assert (audit[0]["item"], audit[0]["action"]) == (first_id, "release")
    assert [a["action"] for a in audit] == ["release", "reject"]
    assert all(a["reviewer"].startswith("session-") for a in audit)
