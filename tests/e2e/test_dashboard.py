"""The web dashboard (GET /dashboard/, service/dashboard/) in a real headless Chromium on the shared
server: log in, find a running job, watch its loss curves grow, pause, resume and cancel it; a wrong
key shows the API's message; the key lives in sessionStorage only; API text never becomes markup.

Debian's chromium and chromium-driver (`make browser`) drive it through Selenium, given by path so
that Selenium Manager never downloads a browser or driver. Set OPENTUNE_DASHBOARD_SCREENSHOTS=DIR
to save the screenshots the README shows (docs/dashboard-*.png) into DIR.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from openai import OpenAI
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.conftest import API_KEY, BASE_MODEL
from tests.e2e.server import Server
from tests.strict_format import jsonl, training_examples

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY_NAME = "opentune.apiKey"  # dashboard.js's sessionStorage item
# Markup in user-provided text: shown as text, it sets nothing; parsed as HTML, it would.
HOSTILE_NAME = "<img src=x onerror=window.__pwned=1>.jsonl"
HOSTILE_NOTE = "<script>window.__pwned=2</script>"
# A loaded 2-core machine: the job may queue behind others and the first step may take minutes.
JOB_START_S = 600
STEP_WAIT_S = 300
PAGE_WAIT_S = 60
ACTIONS = ("pause", "resume", "cancel")
SCREENSHOTS = "OPENTUNE_DASHBOARD_SCREENSHOTS"  # a folder: save the README's screenshots there


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: the dashboard test needs Debian's chromium and "
            "chromium-driver (`make browser`, or `apt-get install chromium chromium-driver`)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(
    driver: WebDriver, condition: Callable[[WebDriver], object], timeout_s: float, what: str
) -> None:
    WebDriverWait(
        driver, timeout_s, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, message=f"{what} (waited {timeout_s:g} s)")


def text_of(driver: WebDriver, css: str) -> str:
    """The element's rendered text, "" while there is none. Read in one script: the page redraws
    every 2 s, and a Selenium element handle could go stale between finding and reading it."""
    found = driver.execute_script("return document.querySelector(arguments[0])?.innerText ?? '';", css)
    return str(found)


def points(driver: WebDriver, line: str) -> int:
    """How many points the chart's `line` (line-train, line-valid) draws; 0 while it has none."""
    found = driver.execute_script(
        "return document.querySelector(arguments[0])?.getAttribute('data-points') ?? '0';",
        f"#loss-chart polyline.{line}",
    )
    return int(found)


def wait_for_status(driver: WebDriver, status: str, timeout_s: float) -> None:
    wait_until(driver, lambda d: text_of(d, "#job-status") == status, timeout_s, f"the job {status}")


def log_in(driver: WebDriver, server: Server, key: str) -> None:
    driver.get(f"{server.url}/dashboard")
    wait_until(driver, lambda d: d.find_element(By.ID, "api-key").is_displayed(), PAGE_WAIT_S, "login form")
    submit_key(driver, key)


def submit_key(driver: WebDriver, key: str) -> None:
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.ID, "login-button").click()


def stored_secrets(driver: WebDriver) -> tuple[object, object, object, list[dict[str, object]]]:
    """The key in sessionStorage, localStorage's item count, document.cookie, the browser's cookies."""
    session, local, cookie = driver.execute_script(
        f"return [sessionStorage.getItem('{KEY_NAME}'), localStorage.length, document.cookie];"
    )
    return session, local, cookie, driver.get_cookies()


def screenshot(driver: WebDriver, name: str) -> None:
    folder = os.environ.get(SCREENSHOTS)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_follow_a_running_job_pause_resume_and_cancel_it(
    server: Server, client: OpenAI, browser: WebDriver
) -> None:
    training = client.files.create(
        file=("train.jsonl", io.BytesIO(jsonl(training_examples(80)))), purpose="fine-tune"
    )
    validation = client.files.create(
        file=("valid.jsonl", io.BytesIO(jsonl(training_examples(6, seed=7)))), purpose="fine-tune"
    )
    # 80 examples x 5 epochs at batch 1: 400 steps, validated every 40; cancelled long before the end
    # (a step takes 0.1 to 0.5 s on 2 cores).
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=training.id,
        validation_file=validation.id,
        suffix="dash",
        metadata={"experiment": "dashboard"},
        hyperparameters={"n_epochs": 5, "batch_size": 1},
    )

    log_in(browser, server, API_KEY)
    row = f"#jobs-table tr[data-job-id='{job.id}']"
    wait_until(browser, lambda d: job.id in text_of(d, row), PAGE_WAIT_S, "the job listed")
    assert "dash" in text_of(browser, row)
    assert stored_secrets(browser) == (API_KEY, 0, "", [])

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait_for_status(browser, "running", JOB_START_S)
    wait_until(browser, lambda d: points(d, "line-train") >= 3, STEP_WAIT_S, "3 training-loss points")
    seen = points(browser, "line-train")
    wait_until(browser, lambda d: points(d, "line-train") > seen, STEP_WAIT_S, f"more than {seen} points")
    wait_until(browser, lambda d: points(d, "line-valid") >= 1, STEP_WAIT_S, "a validation-loss point")
    assert "of 400" in text_of(browser, "#job-progress-text")
    if os.environ.get(SCREENSHOTS):  # the README's picture: a few validations into the run
        wait_until(browser, lambda d: points(d, "line-valid") >= 3, STEP_WAIT_S, "3 validation points")
    screenshot(browser, "dashboard-job.png")

    browser.find_element(By.CSS_SELECTOR, "#job-view a[href='#/jobs']").click()
    wait_until(browser, lambda d: "/ 400" in text_of(d, row), PAGE_WAIT_S, "the job's progress listed")
    screenshot(browser, "dashboard-jobs.png")
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    wait_for_status(browser, "running", PAGE_WAIT_S)

    browser.find_element(By.ID, "job-pause").click()
    wait_for_status(browser, "paused", PAGE_WAIT_S)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    wait_until(browser, lambda d: d.find_element(By.ID, "job-resume").is_enabled(), PAGE_WAIT_S, "resumable")
    browser.find_element(By.ID, "job-resume").click()
    wait_for_status(browser, "running", JOB_START_S)

    browser.find_element(By.ID, "job-cancel").click()
    wait_until(browser, expected_conditions.alert_is_present(), PAGE_WAIT_S, "the confirmation")
    browser.switch_to.alert.accept()
    wait_for_status(browser, "cancelled", PAGE_WAIT_S)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert not any(browser.find_element(By.ID, f"job-{name}").is_enabled() for name in ACTIONS)


def test_api_text_is_shown_as_text_never_run(server: Server, client: OpenAI, browser: WebDriver) -> None:
    # Too few examples: the job fails its file check within seconds, without training.
    file = client.files.create(
        file=(HOSTILE_NAME, io.BytesIO(jsonl(training_examples(2)))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=file.id, metadata={"note": HOSTILE_NOTE}
    )
    log_in(browser, server, API_KEY)
    wait_until(browser, lambda d: d.find_element(By.ID, "jobs-view").is_displayed(), PAGE_WAIT_S, "the jobs")
    browser.get(f"{server.url}/dashboard/#/jobs/{job.id}")  # a link to a job works as the list's does
    wait_for_status(browser, "failed", JOB_START_S)
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error is not None and failed.error.message in text_of(browser, "#job-details")
    assert HOSTILE_NOTE in text_of(browser, "#job-details")

    browser.find_element(By.CSS_SELECTOR, "#nav a[data-view='files']").click()
    wait_until(browser, lambda d: HOSTILE_NAME in text_of(d, "#files-table"), PAGE_WAIT_S, "the file listed")
    browser.find_element(By.CSS_SELECTOR, "#nav a[data-view='models']").click()
    wait_until(browser, lambda d: BASE_MODEL in text_of(d, "#models-table"), PAGE_WAIT_S, "the models listed")
    assert browser.execute_script("return window.__pwned === undefined")


def test_a_wrong_key_shows_the_api_error_and_is_not_kept(server: Server, browser: WebDriver) -> None:
    log_in(browser, server, "sk-not-a-key")
    wait_until(browser, lambda d: text_of(d, "#error-text") != "", PAGE_WAIT_S, "an error shown")
    assert "Incorrect API key provided" in text_of(browser, "#error-text")  # the API's own message
    assert browser.find_element(By.ID, "login-view").is_displayed()
    assert not browser.find_element(By.ID, "jobs-view").is_displayed()
    assert stored_secrets(browser) == (None, 0, "", [])

    submit_key(browser, API_KEY)  # on the same page: the error goes away
    wait_until(browser, lambda d: d.find_element(By.ID, "jobs-view").is_displayed(), PAGE_WAIT_S, "the jobs")
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert stored_secrets(browser) == (API_KEY, 0, "", [])

    browser.find_element(By.ID, "logout").click()
    wait_until(
        browser, lambda d: d.find_element(By.ID, "login-view").is_displayed(), PAGE_WAIT_S, "logged out"
    )
    assert stored_secrets(browser) == (None, 0, "", [])
