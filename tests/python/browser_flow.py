"""A real browser through the whole user journey on an Orrery hub.

Usage: browser_flow.py HUB_URL USER PASSWORD ARTIFACT_DIR

Headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium) logs in on
HUB_URL/hub/login, presses "Start my server" on the home page, sees the spawn-pending page
(its URL and <progress> bar; screenshot `spawn-pending.png`), waits until the page's script
opens JupyterLab at /user/USER/lab, opens a new Python 3 notebook from the launcher, runs
`print(6*7)` and waits for `42` in the output (screenshot `jupyterlab.png`).

On success prints one JSON line on stdout and exits 0. On failure saves `failure.png`,
`failure.html` and `failure-console.log` (the page's console) into ARTIFACT_DIR, prints what
failed on stderr and exits 1. Never downloads anything: the driver and browser paths are
given explicitly, so selenium-manager is not run (and SE_OFFLINE forbids it to go online).
"""

import json
import os
import sys
import tempfile
import time
import traceback

# Selenium must not try to fetch a driver or browser (no network here): both paths are given,
# and should selenium-manager still be run it stays offline.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("ORRERY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ORRERY_CHROMEDRIVER", "/usr/bin/chromedriver")
SPAWN_WAIT_S = 120


class FlowError(Exception):
    """A step of the journey did not happen as expected."""


def log(msg):
    print(f"[browser_flow {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_driver(profile_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        f"--user-data-dir={profile_dir}",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(60)
    return driver


def wait(driver, seconds, cond, what):
    """WebDriverWait with a message naming the step."""
    try:
        return WebDriverWait(
            driver, seconds, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(cond)
    except Exception as e:  # TimeoutException and friends
        raise FlowError(f"timed out after {seconds} s waiting for {what} (at {driver.current_url})") from e


def click_when_ready(driver, seconds, locator, what):
    el = wait(driver, seconds, EC.element_to_be_clickable(locator), what)
    el.click()
    return el


def login(driver, hub, user, password):
    driver.get(f"{hub}/hub/login")
    wait(driver, 20, EC.presence_of_element_located((By.ID, "username")), "the login form")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.XPATH, "//form[.//input[@id='password']]//button[@type='submit']").click()
    wait(driver, 20, EC.url_contains("/hub/home"), "the home page after logging in")
    log(f"logged in as {user}: {driver.current_url}")


def start_server(driver):
    button = wait(
        driver,
        20,
        EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Start my server']")),
        "the 'Start my server' button on the home page",
    )
    button.click()
    log("pressed 'Start my server'")


def see_spawn_pending(driver, user, artifacts):
    wait(
        driver,
        30,
        lambda d: "/hub/spawn-pending/" in d.current_url or f"/user/{user}/" in d.current_url,
        "the spawn-pending page",
    )
    if "/hub/spawn-pending/" not in driver.current_url:
        raise FlowError(
            f"Start went straight to {driver.current_url}, not to the spawn-pending page "
            "(the server was ready within slow_spawn_timeout?)"
        )
    bar = wait(driver, 10, EC.presence_of_element_located((By.CSS_SELECTOR, "progress#progress-bar")), "the <progress> bar")
    # Capture before the page's script moves on to the server.
    shot = os.path.join(artifacts, "spawn-pending.png")
    driver.save_screenshot(shot)
    url = driver.current_url
    if "/hub/spawn-pending/" not in url:
        raise FlowError(f"the page left spawn-pending before its screenshot was taken ({url})")
    try:
        info = {
            "url": url,
            "progress": bar.get_attribute("value"),
            "status": driver.find_element(By.ID, "progress-status").text,
        }
    except (StaleElementReferenceException, WebDriverException):
        info = {"url": url}
    log(f"spawn-pending page: {info}; screenshot {shot}")
    return info


def land_in_lab(driver, user):
    prefix = f"/user/{user}/lab"

    def arrived_or_failed(d):
        if prefix in d.current_url:
            return True
        # The page's script reveals #spawn-failed (or the server renders it) when the spawn fails.
        for el in d.find_elements(By.CSS_SELECTOR, "#spawn-failed:not([hidden]) .notice, .notice.error"):
            if el.is_displayed() and el.text.strip():
                raise FlowError(f"the spawn-pending page reports a failure: {el.text.strip()}")
        return False

    try:
        WebDriverWait(
            driver, SPAWN_WAIT_S, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
        ).until(arrived_or_failed)
    except FlowError:
        raise
    except Exception as e:
        raise FlowError(
            f"timed out after {SPAWN_WAIT_S} s waiting for JupyterLab at {prefix} (at {driver.current_url})"
        ) from e
    log(f"in JupyterLab: {driver.current_url}")
    wait(driver, 90, EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-LabShell")), "the JupyterLab shell")
    return driver.current_url


def open_notebook(driver):
    card = (
        By.CSS_SELECTOR,
        '.jp-LauncherCard[data-category="Notebook"], .jp-LauncherCard[title^="Python 3"]',
    )
    click_when_ready(driver, 90, card, "the launcher's Python 3 notebook card")
    log("clicked the Python 3 notebook card")
    wait(driver, 60, EC.url_contains(".ipynb"), "the new notebook to open")
    # Run only once the kernel is connected (over the proxied websocket) and idle: JupyterLab
    # clears, rather than queues, a cell run while the notebook's session has no kernel yet.
    wait(
        driver,
        90,
        EC.presence_of_element_located(
            (
                By.CSS_SELECTOR,
                '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status="idle"]',
            )
        ),
        "the notebook's kernel to be idle",
    )
    log("kernel idle")
    editor = click_when_ready(
        driver,
        60,
        (By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-editor .cm-content"),
        "the first cell's editor",
    )
    return editor


def run_cell(driver, editor):
    editor.send_keys("print(6*7)")
    wait(
        driver,
        10,
        lambda d: "print(6*7)" in editor.text,
        "the code to appear in the cell",
    )
    # Shift+Enter runs the cell (JupyterLab queues it until the kernel is up).
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    log("ran the cell with Shift+Enter")

    def output(d):
        for el in d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"):
            text = el.text.strip()
            if text:
                return text
        return False

    def first_prompt(d):
        els = d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt")
        return els[0].text.strip() if els else ""

    # On a loaded machine JupyterLab sometimes drops a run issued right after the kernel
    # connects: the prompt stays "[ ]:" and nothing is sent. A person would press Run again;
    # so does this, at most twice, and says so. (The kernel WebSocket path itself is checked
    # message by message in tests/docker_e2e.rs.)
    for attempt in range(3):
        try:
            text = wait(driver, 20 if attempt < 2 else 120, output, "the cell's output (kernel start and execution)")
            break
        except FlowError:
            prompt = first_prompt(driver)
            if attempt == 2 or prompt not in ("[ ]:", "[ ]"):
                raise
            log(f"the run was dropped (prompt {prompt!r}); running the first cell again")
            cell = driver.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputArea-editor .cm-content")
            cell.click()
            cell.send_keys(Keys.SHIFT, Keys.ENTER)
    if text != "42":
        raise FlowError(f"the cell printed {text!r}, not '42'")
    log(f"output: {text}")
    return text


def save_failure(driver, artifacts):
    if driver is None:
        return
    for name, action in (
        ("failure.png", lambda p: driver.save_screenshot(p)),
        ("failure.html", lambda p: open(p, "w", encoding="utf-8").write(driver.page_source)),
        (
            "failure-console.log",
            lambda p: open(p, "w", encoding="utf-8").write(
                "\n".join(f"{e.get('level')} {e.get('message')}" for e in driver.get_log("browser"))
            ),
        ),
    ):
        try:
            action(os.path.join(artifacts, name))
        except Exception as e:  # best effort: the browser may be gone
            log(f"could not save {name}: {e}")
    try:
        log(f"failed at {driver.current_url}; artifacts in {artifacts}")
    except Exception:
        pass


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    hub, user, password, artifacts = argv[1].rstrip("/"), argv[2], argv[3], argv[4]
    os.makedirs(artifacts, exist_ok=True)
    for stale in ("spawn-pending.png", "jupyterlab.png", "failure.png", "failure.html", "failure-console.log"):
        try:
            os.remove(os.path.join(artifacts, stale))
        except FileNotFoundError:
            pass
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            log(f"{path} is missing: install Debian's chromium and chromium-driver")
            return 1

    driver = None
    t0 = time.monotonic()
    timings = {}
    with tempfile.TemporaryDirectory(prefix="orrery-chromium-") as profile:
        try:
            driver = make_driver(profile)
            login(driver, hub, user, password)
            timings["login_s"] = round(time.monotonic() - t0, 2)
            start_server(driver)
            t_start = time.monotonic()
            pending = see_spawn_pending(driver, user, artifacts)
            lab_url = land_in_lab(driver, user)
            timings["start_to_lab_s"] = round(time.monotonic() - t_start, 2)
            editor = open_notebook(driver)
            t_cell = time.monotonic()
            out = run_cell(driver, editor)
            timings["cell_s"] = round(time.monotonic() - t_cell, 2)
            shot = os.path.join(artifacts, "jupyterlab.png")
            driver.save_screenshot(shot)
            log(f"screenshot {shot}")
            timings["total_s"] = round(time.monotonic() - t0, 2)
            print(
                json.dumps(
                    {
                        "spawn_pending_seen": True,
                        "spawn_pending": pending,
                        "lab_url": lab_url,
                        "output": out,
                        "timings": timings,
                    }
                ),
                flush=True,
            )
            return 0
        except FlowError as e:
            log(f"FAILED: {e}")
            save_failure(driver, artifacts)
            return 1
        except Exception as e:
            log(f"FAILED with an unexpected error: {e!r}")
            traceback.print_exc(file=sys.stderr)
            save_failure(driver, artifacts)
            return 1
        finally:
            if driver is not None:
                try:
                    driver.quit()
                except Exception:
                    pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
