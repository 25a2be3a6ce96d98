"""Per-user origins in a real browser: the hub's login cookie stays on the hub's host.

Usage: origin_browser.py HUB_ORIGIN USER PASSWORD PAGE_URL ECHO_URL ARTIFACT_DIR

Headless Chromium, with a resolver rule sending `hub.test` and every `*.hub.test` to
127.0.0.1 (no DNS needed), logs in as USER on HUB_ORIGIN/hub/login, then opens PAGE_URL: a
page another user's server serves on its own origin (tests/python/origin_server.py), whose
script tries to read the hub's /hub/token page and API with the visitor's credentials and
writes what happened into the page. Then it opens ECHO_URL, where that server reports the
Host and Cookie headers it received.

Prints one JSON line {"result": <the page's report>, "echo": <the echo JSON>} and exits 0; on
failure saves `failure.png` and `failure.html` into ARTIFACT_DIR and exits 1.
"""

import json
import sys
import tempfile
import traceback

from browser_flow import EC, By, log, login, make_driver, save_failure, wait

RESOLVER = "--host-resolver-rules=MAP hub.test 127.0.0.1, MAP *.hub.test 127.0.0.1"


def main(argv):
    hub, user, password, page_url, echo_url, artifacts = argv
    with tempfile.TemporaryDirectory() as profile:
        driver = make_driver(profile, extra_args=[RESOLVER])
        try:
            login(driver, hub, user, password)
            driver.get(page_url)
            wait(driver, 30, EC.title_is("done"), "the page's probes to finish")
            result = driver.find_element(By.ID, "result").text
            log(f"page report:\n{result}")
            driver.get(echo_url)
            echo = json.loads(driver.find_element(By.TAG_NAME, "body").text)
            print(json.dumps({"result": result, "echo": echo}))
            return 0
        except Exception:
            traceback.print_exc()
            save_failure(driver, artifacts)
            return 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
