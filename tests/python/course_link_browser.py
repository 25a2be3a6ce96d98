"""A course link in a real browser, as a student opens one.

Usage: course_link_browser.py LINK USER PASSWORD ARTIFACT_DIR TAG

Headless Chromium opens LINK (a /hub/user-redirect/git-pull?... nbgitpuller link) logged out:
the hub asks it to log in, then starts the student's server (the spawn-pending page), then
nbgitpuller clones or pulls the course repository into the home and sends the browser on to
the link's urlpath in JupyterLab, which opens the file in a tab. Screenshot
`course-link-TAG.png` when the tab is there.

Prints one JSON line {"url": <where it landed>} and exits 0; on failure saves
`failure-TAG.png`, `.html` and `-console.log` into ARTIFACT_DIR and exits 1.
"""

import json
import sys
import tempfile
import traceback

from browser_flow import EC, By, log, make_driver, save_failure, wait

LAND_WAIT_S = 240


def main(argv):
    link, user, password, artifacts, tag = argv
    with tempfile.TemporaryDirectory() as profile:
        driver = make_driver(profile)
        try:
            driver.get(link)
            wait(driver, 30, EC.presence_of_element_located((By.ID, "username")), "the login form")
            log(f"asked to log in: {driver.current_url}")
            driver.find_element(By.ID, "username").send_keys(user)
            driver.find_element(By.ID, "password").send_keys(password)
            driver.find_element(
                By.XPATH, "//form[.//input[@id='password']]//button[@type='submit']"
            ).click()
            wait(
                driver,
                LAND_WAIT_S,
                lambda d: "/lab" in d.current_url and d.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel"),
                "JupyterLab at the link's urlpath",
            )
            # Where the link led; JupyterLab may rewrite its URL afterwards (to the file
            # browser's folder once the file's tab is open), so this is what is reported.
            landed = driver.current_url
            log(f"landed: {landed}")
            # JupyterLab opens the link's file in a tab of its own.
            name = landed.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            wait(
                driver,
                90,
                lambda d: any(
                    name in t.text for t in d.find_elements(By.CSS_SELECTOR, ".lm-TabBar-tabLabel")
                ),
                f"a tab for {name}",
            )
            driver.save_screenshot(f"{artifacts}/course-link-{tag}.png")
            print(json.dumps({"url": landed}))
            return 0
        except Exception:
            traceback.print_exc()
            save_failure(driver, artifacts, f"-{tag}")
            return 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
