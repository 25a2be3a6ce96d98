"""The admin's GPU panel in a real browser.

Usage: gpu_panel_browser.py HUB_URL USER PASSWORD KERNEL ARTIFACT_DIR

Headless Chromium logs in as USER (an admin) on HUB_URL/hub/login, opens the admin page and
follows its "GPUs" link, reads the panel's tables as shown (holders, queue, processes Orrery
did not start; screenshot `gpu-panel.png`), then presses "Take GPU back" on the holder row of
kernel KERNEL and reads the notice on the page it lands on (screenshot `gpu-panel-after.png`).

Prints one JSON line {"holders": [...], "queue": [...], "foreign": [...], "notice": "...",
"after_holders": [...]} and exits 0; on failure saves `failure.png` and `failure.html` into
ARTIFACT_DIR and exits 1.
"""

import json
import sys
import tempfile
import traceback

from browser_flow import EC, By, click_when_ready, log, login, make_driver, save_failure, wait


def rows(driver, table_id, attrs):
    """Each row of table #table_id as a dict of its data-* attributes and its cells' text."""
    found = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    out = []
    for row in found:
        item = {a: row.get_attribute(f"data-{a}") for a in attrs}
        item["cells"] = [c.text for c in row.find_elements(By.CSS_SELECTOR, "th, td")]
        out.append(item)
    return out


def main(argv):
    hub, user, password, kernel, artifacts = argv
    with tempfile.TemporaryDirectory() as profile:
        driver = make_driver(profile)
        try:
            login(driver, hub, user, password)
            driver.get(f"{hub}/hub/admin")
            click_when_ready(driver, 30, (By.LINK_TEXT, "GPUs →"), "the admin page's GPUs link")
            wait(driver, 30, EC.presence_of_element_located((By.ID, "units-heading")), "the GPU panel")
            holders = rows(driver, "gpu-holders", ["kernel", "unit", "user"])
            queue = rows(driver, "gpu-queue", ["kernel", "user", "position"])
            foreign = rows(driver, "gpu-foreign", ["pid"])
            log(f"holders: {holders}\nqueue: {queue}\nforeign: {foreign}")
            driver.save_screenshot(f"{artifacts}/gpu-panel.png")
            button = (
                By.CSS_SELECTOR,
                f'#gpu-holders tr[data-kernel="{kernel}"] button[type="submit"]',
            )
            click_when_ready(driver, 30, button, "the holder's Take GPU back button")
            wait(
                driver,
                30,
                EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "gave its GPU back"),
                "the notice that the GPU was taken back",
            )
            notice = driver.find_element(By.CSS_SELECTOR, "main .notice, main [role=status]").text
            after = rows(driver, "gpu-holders", ["kernel", "unit", "user"])
            driver.save_screenshot(f"{artifacts}/gpu-panel-after.png")
            print(
                json.dumps(
                    {
                        "holders": holders,
                        "queue": queue,
                        "foreign": foreign,
                        "notice": notice,
                        "after_holders": after,
                    }
                )
            )
            return 0
        except Exception:
            traceback.print_exc()
            save_failure(driver, artifacts)
            return 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
