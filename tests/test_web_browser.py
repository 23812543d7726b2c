"""The web app as a person uses it: the distribution's Chromium, driven by Playwright,
against the app served by uvicorn on a real port (the daemon's WebServer).

Each step saves a screenshot in ``$GRILLSTATS_ARTIFACTS/screenshots`` when that is set
(``.ci/run`` sets it to ``test-artifacts/``), else in the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from grillstats_bridge.store.secrets import LoginRefusal
from grillstats_bridge.web.server import WebServer
from tests.fixtures.web import ALICE, BOB, PASSWORD, WebRig

CHROMIUM = "/usr/bin/chromium"  # apt's chromium: Playwright downloads no browser


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def site(web: WebRig) -> Iterator[str]:
    server = WebServer("127.0.0.1", 0, web.app)
    server.start()
    yield server.base_url
    server.stop()


@pytest.fixture
def shots(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = os.environ.get("GRILLSTATS_ARTIFACTS")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder = (Path(root) / "screenshots" / name) if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page: Page, site: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{site}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_a_cook_from_login_to_logout(web: WebRig, site: str, browser: Browser, shots: Path) -> None:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []  # a script error or a refused resource (the CSP) shows here
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, site, ALICE)
    expect(page).to_have_url(f"{site}/devices")
    probe = page.locator('section[data-serial="SIG-1"] tr[data-channel="1"] [data-field="value"]')
    expect(probe).to_have_text("70.0 °F")
    page.screenshot(path=shots / "1-devices.png", full_page=True)

    page.evaluate("window.notReloaded = true")
    web.set_probe("SIG-1", 1, 151.5)  # what the daemon's next poll writes
    expect(probe).to_have_text("151.5 °F", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True  # the value changed in place
    page.screenshot(path=shots / "2-live-value.png", full_page=True)

    page.get_by_role("link", name="Alerts").click()
    form = page.locator("#add-alert")
    form.locator('[name="probe"]').fill("2")
    form.locator('[name="type"]').select_option("target")
    form.locator('[name="target"]').fill("195")
    form.locator('[name="name"]').fill("brisket done")
    form.get_by_role("button", name="Add alert").click()
    row = page.locator("#alerts tr", has_text="brisket done")
    expect(row).to_contain_text("≥ 195 °F")
    page.screenshot(path=shots / "3-alert-added.png", full_page=True)

    page.get_by_role("link", name="Sessions").click()
    page.locator("#sessions a").first.click()
    expect(page.locator("#chart svg polyline")).to_have_count(2)
    page.screenshot(path=shots / "4-session-chart.png", full_page=True)

    with page.expect_download() as info:
        page.locator("#download-csv").click()
    saved = shots / "session.csv"
    info.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == "time,probe,value,unit" and len(lines) > 50

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{site}/login")
    page.goto(f"{site}/devices")
    expect(page).to_have_url(f"{site}/login")  # the login is gone
    page.screenshot(path=shots / "5-logged-out.png", full_page=True)
    assert errors == []
    context.close()


def test_five_wrong_passwords_lock_the_account(
    web: WebRig, site: str, browser: Browser, shots: Path
) -> None:
    page = browser.new_page()
    for attempt in range(5):
        log_in(page, site, BOB, f"wrong {attempt}")
        expect(page.locator("#login-error")).to_have_text(LoginRefusal.INVALID.value)
    page.screenshot(path=shots / "1-wrong-password.png")
    log_in(page, site, BOB)  # the right password, too late
    expect(page.locator("#login-error")).to_have_text(LoginRefusal.LOCKED.value)
    page.screenshot(path=shots / "2-locked.png")
    page.close()
