"""A login through a real OpenID Provider in a real browser.

Usage: oidc_browser.py HUB_URL LOGIN PASSWORD ARTIFACT_DIR TAG

Headless Chromium opens HUB_URL/hub/login, presses "Sign in with …", logs in on the
provider's own login page (oidc-provider's development interactions: fields `login` and
`password`), gives consent if the provider asks, and follows the provider back to the hub.
Screenshot `oidc-TAG.png` of where it landed.

Prints one JSON line {"url": ..., "title": ..., "text": ...} (the landing page's URL, title and
visible text) and exits 0, whether the hub let the person in or refused them (the caller
decides which was right); on a failure to get there saves `failure-TAG.png`, `.html` and
`-console.log` into ARTIFACT_DIR and exits 1.
"""

import json
import sys
import tempfile
import traceback

from browser_flow import EC, By, log, make_driver, save_failure, wait


def main(argv):
    hub, login, password, artifacts, tag = argv
    with tempfile.TemporaryDirectory() as profile:
        driver = make_driver(profile)
        try:
            driver.get(f"{hub}/hub/login")
            wait(driver, 30, EC.element_to_be_clickable((By.ID, "provider-login")), "the provider's button")
            driver.find_element(By.ID, "provider-login").click()
            wait(driver, 30, EC.presence_of_element_located((By.NAME, "login")), "the provider's login page")
            log(f"at the provider: {driver.current_url}")
            driver.find_element(By.NAME, "login").send_keys(login)
            driver.find_element(By.NAME, "password").send_keys(password)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            # The provider may ask for consent; then it sends the browser back to the hub.
            def back_or_consent(d):
                if d.current_url.startswith(hub):
                    return "hub"
                buttons = d.find_elements(By.CSS_SELECTOR, "button[type=submit]")
                if buttons and "consent" in d.page_source.lower() or any(
                    b.text.strip().lower() in ("continue", "authorize") for b in buttons
                ):
                    return "consent"
                return False
            if wait(driver, 30, back_or_consent, "the hub or the consent page") == "consent":
                log("consent")
                driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                wait(driver, 30, lambda d: d.current_url.startswith(hub), "back at the hub")
            wait(driver, 30, EC.presence_of_element_located((By.TAG_NAME, "h1")), "the hub's page")
            driver.save_screenshot(f"{artifacts}/oidc-{tag}.png")
            body = driver.find_element(By.TAG_NAME, "body").text
            print(json.dumps({"url": driver.current_url, "title": driver.title, "text": body}))
            return 0
        except Exception:
            traceback.print_exc()
            save_failure(driver, artifacts, f"-{tag}")
            return 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
