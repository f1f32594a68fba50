"""A real browser through the appliance's dashboard: headless Chromium from Debian driven by
Selenium over Debian's chromedriver (nothing is downloaded: both binaries are named).

Run by tests/e2e/test_dashboard.py inside the harness's network namespace (the browser, its
driver and this script share that namespace's loopback):

    DASHBOARD_PASSWORD=... python dashboard_browser.py login-fails URL CA ARTIFACTS
    DASHBOARD_PASSWORD=... python dashboard_browser.py launch URL CA ARTIFACTS IMAGE FLAVOR NETWORK KEYPAIR EXTERNAL
    DASHBOARD_PASSWORD=... DASHBOARD_ADMIN_PASSWORD=... python dashboard_browser.py roles URL CA ARTIFACTS

URL is the dashboard's web root (https://10.254.0.10/horizon/), CA the appliance's CA
certificate (the lxc user's password comes in the environment, never on a command line),
which a throw-away NSS database of this run trusts (Chromium on Linux reads
$HOME/.pki/nssdb): the certificate is checked, not ignored. Progress goes to stdout as JSON
lines; `launch` prints {"floating_ip": ...} once the address is associated and waits for a
line on stdin (the caller's SSH check) before it deletes the instance and logs out; it keeps
screenshots of the instance list with the instance Active and of its console log under
ARTIFACTS. On a failure the page's screenshot and source are kept there, and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTANCE = "dashboard-e2e"
# Bounds of this run's waits, seconds: an instance ACTIVE on a loaded CI host, a page.
ACTIVE_WITHIN = 600
PAGE_WITHIN = 120
# Instance actions LXC cannot do (Nova's policy refuses them; CONSOLE_TYPE = None): the
# instance row must not offer them (Horizon's action names).
REFUSED_ACTIONS = {"snapshot", "suspend", "shelve", "rescue", "resize", "migrate", "console", "attach_volume"}


def say(**values) -> None:
    print(json.dumps(values), flush=True)


def trusting_home(ca: Path, home: Path) -> None:
    """An NSS database under ``home`` that trusts ``ca`` for TLS servers (libnss3-tools)."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "appliance-ca", "-i", str(ca)],
                   check=True)


def browser(home: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", f"--user-data-dir={home / 'profile'}"):
        options.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "HOME": str(home)})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_WITHIN)
    return driver


def until(what: str, probe, timeout: float, interval: float = 2.0):
    """``probe()``'s first true value within ``timeout`` seconds; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except (NoSuchElementException, StaleElementReferenceException):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def log_in(driver, url: str, user: str, password: str) -> None:
    driver.get(url + "auth/login/")
    # Horizon sends a browser with a live session on to its overview instead of the form.
    until(f"the login form for {user} (no session open)", lambda: driver.find_elements(By.ID, "id_username"),
          PAGE_WITHIN)
    driver.find_element(By.ID, "id_username").send_keys(user)
    driver.find_element(By.ID, "id_password").send_keys(password)
    driver.find_element(By.ID, "loginBtn").click()


def login_fails(driver, url: str, password: str) -> None:
    log_in(driver, url, "lxc", password + "-wrong")
    until("the login error", lambda: "Invalid credentials" in driver.page_source, PAGE_WITHIN)
    assert "/auth/login/" in driver.current_url, driver.current_url
    driver.get(url + "project/")
    until("the login page again (no session)", lambda: "/auth/login/" in driver.current_url, PAGE_WITHIN)
    say(step="wrong password refused, no session")


def pick(driver, step: str, name: str) -> None:
    """In a Launch Instance step, move the row named ``name`` from the available table to the
    allocated one, unless it is allocated already (Horizon allocates a lone network)."""
    driver.find_element(By.XPATH, f"//div[contains(@class,'wizard-nav')]//li[normalize-space()='{step}']").click()

    def rows(table: str) -> list:
        return [r for r in driver.find_elements(
            By.XPATH, f"//div[contains(@class,'transfer-{table}')]//tr[.//td[normalize-space()='{name}']]")
            if r.is_displayed()]

    time.sleep(1)
    if rows("allocated"):
        return
    until(f"{step}: a row {name}", lambda: rows("available"), PAGE_WITHIN)[0].find_element(
        By.XPATH, ".//button[contains(@class,'fa-arrow-up')]").click()
    until(f"{step}: {name} allocated", lambda: rows("allocated"), PAGE_WITHIN, interval=0.5)


def choose(driver, select_id: str, text: str | None = None) -> str:
    """Choose the option showing ``text`` (else the first with a value) in the form's select
    ``select_id``; returns its text. Horizon's themed forms hide the native select behind a
    drop-down of their own, so the choice is set on the select itself, as that drop-down does."""
    select = until(f"the form's {select_id}", lambda: driver.find_element(By.ID, select_id), PAGE_WITHIN)
    options = [o for o in select.find_elements(By.TAG_NAME, "option") if o.get_attribute("value")]
    option = next((o for o in options if text is None or o.get_attribute("textContent").strip() == text), None)
    assert option is not None, f"{select_id}: no option {text!r} among " \
        f"{[o.get_attribute('textContent').strip() for o in options]}"
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                          select, option.get_attribute("value"))
    return option.get_attribute("textContent").strip()


def instance_row(driver):
    return driver.find_element(By.CSS_SELECTOR, f"tr[data-display='{INSTANCE}']")


def row_action(driver, action: str) -> None:
    row = instance_row(driver)
    toggles = row.find_elements(By.CSS_SELECTOR, ".dropdown-toggle")
    if toggles:
        toggles[0].click()
    row.find_element(By.CSS_SELECTOR, f"[id$='__action_{action}']").click()


def launch(driver, url: str, password: str, artifacts: Path, image: str, flavor: str, network: str,
           keypair: str, external: str) -> None:
    log_in(driver, url, "lxc", password)
    until("the project overview", lambda: "/auth/login/" not in driver.current_url, PAGE_WITHIN)
    say(step="logged in", url=driver.current_url)
    driver.get(url + "project/instances/")
    driver.find_element(By.ID, "instances__action_launch-ng").click()
    until("the Launch Instance form", lambda: driver.find_element(By.ID, "name").is_displayed(), PAGE_WITHIN)
    driver.find_element(By.ID, "name").send_keys(INSTANCE)
    pick(driver, "Source", image)
    pick(driver, "Flavor", flavor)
    pick(driver, "Networks", network)
    pick(driver, "Key Pair", keypair)
    driver.find_element(By.XPATH, "//button[contains(@class,'finish')]").click()
    say(step="launch submitted")

    def active() -> bool:
        driver.get(url + "project/instances/")
        status = instance_row(driver).find_element(By.CSS_SELECTOR, "td.status_up, td[class*='status']").text
        assert "Error" not in status, f"the instance is {status}"
        return "Active" in status

    until("the instance Active in the instance list", active, ACTIVE_WITHIN, interval=5)
    instance_id = instance_row(driver).get_attribute("data-object-id")
    say(step="instance active", id=instance_id)
    actions = {a.get_attribute("id").split("__action_")[1]
               for a in instance_row(driver).find_elements(By.CSS_SELECTOR, "[id*='__action_']")}
    assert "delete" in actions and not actions & REFUSED_ACTIONS, f"the instance row offers {sorted(actions)}"
    say(step="row actions", offered=sorted(actions))
    screenshot(driver, artifacts, "launch-active")

    driver.get(url + "project/floating_ips/")
    driver.find_element(By.ID, "floating_ips__action_allocate").click()
    choose(driver, "id_pool", external)
    driver.find_element(By.CSS_SELECTOR, ".modal-footer .btn-primary").click()
    time.sleep(2)
    driver.get(url + "project/instances/")
    row_action(driver, "associate")
    address = choose(driver, "id_ip_id")
    driver.find_element(By.CSS_SELECTOR, ".modal-footer .btn-primary").click()

    def associated() -> bool:
        driver.get(url + "project/instances/")
        return address in instance_row(driver).text

    until(f"floating IP {address} shown on the instance", associated, PAGE_WITHIN, interval=3)

    driver.get(f"{url}project/instances/{instance_id}/?tab=instance_details__log")
    until("the console log", lambda: len(driver.find_element(By.CSS_SELECTOR, "pre.logs").text.strip()) > 0,
          PAGE_WITHIN, interval=5)
    say(step="console log shown")
    screenshot(driver, artifacts, "launch-console-log")
    say(floating_ip=address)
    answer = sys.stdin.readline().strip()
    assert answer == "continue", f"the caller said {answer!r}"

    driver.get(url + "project/instances/")
    row_action(driver, "delete")
    driver.find_element(By.CSS_SELECTOR, ".modal-footer .btn-danger, .modal-footer .btn-primary").click()

    def gone() -> bool:
        driver.get(url + "project/instances/")
        return not driver.find_elements(By.CSS_SELECTOR, f"tr[data-display='{INSTANCE}']")

    until("the instance gone from the list", gone, ACTIVE_WITHIN, interval=5)
    say(step="instance deleted")
    logout = driver.find_element(By.CSS_SELECTOR, "a[href$='/auth/logout/']")
    driver.execute_script("arguments[0].click();", logout)  # it sits in the closed user menu
    until("the login page after logging out", lambda: "/auth/login/" in driver.current_url, PAGE_WITHIN)
    driver.get(url + "project/")
    until("the login page again (session ended)", lambda: "/auth/login/" in driver.current_url, PAGE_WITHIN)
    say(step="logged out")


def roles(driver, url: str, password: str, admin_password: str) -> None:
    """A project member (lxc) sees no admin panel and is refused its pages; admin sees it."""
    log_in(driver, url, "lxc", password)
    until("lxc: the project overview", lambda: "/auth/login/" not in driver.current_url, PAGE_WITHIN)
    admin_links = driver.find_elements(By.CSS_SELECTOR, f"a[href^='{url_path(url)}admin/']")
    assert not admin_links, f"lxc is offered {[a.get_attribute('href') for a in admin_links][:3]}"
    driver.get(url + "admin/instances/")
    until("lxc: admin/instances/ refused", lambda: "Unauthorized" in driver.title or "/auth/login/" in driver.current_url,
          PAGE_WITHIN)
    say(step="lxc: no admin panel, admin pages refused")
    # Horizon's own log-out ends the session on the server, which deleting the browser's
    # cookies does not: a response still on its way can set the session cookie again.
    driver.get(url + "auth/logout/")
    until("lxc: the login page after logging out", lambda: "/auth/login/" in driver.current_url, PAGE_WITHIN)
    log_in(driver, url, "admin", admin_password)
    until("admin: the overview", lambda: "/auth/login/" not in driver.current_url, PAGE_WITHIN)
    driver.get(url + "admin/instances/")
    until("admin: the admin instance list", lambda: driver.title.startswith("Instances"), PAGE_WITHIN)
    say(step="admin: admin/instances/ shown")


def url_path(url: str) -> str:
    """The web root's path of ``url`` (https://host/horizon/ → /horizon/)."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def screenshot(driver, artifacts: Path, name: str) -> None:
    """A passing run's evidence: the page as the browser shows it, as artifacts/NAME.png."""
    artifacts.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(artifacts / f"{name}.png"))
    say(screenshot=str(artifacts / f"{name}.png"))


def keep_evidence(driver, artifacts: Path, scenario: str) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        driver.save_screenshot(str(artifacts / f"{scenario}-{stamp}.png"))
        (artifacts / f"{scenario}-{stamp}.html").write_text(driver.page_source, encoding="utf-8")
        say(evidence=str(artifacts / f"{scenario}-{stamp}.png"), url=driver.current_url)
    except WebDriverException as exc:
        say(evidence=f"none: {exc.msg}")


def main(argv: list[str]) -> int:
    scenario, url, ca, artifacts, *rest = argv
    password = os.environ["DASHBOARD_PASSWORD"]
    with tempfile.TemporaryDirectory(prefix="dashboard-browser-") as tmp:
        home = Path(tmp)
        trusting_home(Path(ca), home)
        driver = browser(home)
        try:
            if scenario == "login-fails":
                login_fails(driver, url, password)
            elif scenario == "roles":
                roles(driver, url, password, os.environ["DASHBOARD_ADMIN_PASSWORD"])
            else:
                launch(driver, url, password, Path(artifacts), *rest)
            return 0
        except Exception as exc:  # any failure: keep what the browser showed, then say why
            keep_evidence(driver, Path(artifacts), scenario)
            say(failed=f"{type(exc).__name__}: {exc}")
            return 1
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
