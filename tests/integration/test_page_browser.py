"""The live page in headless Chromium (Debian's chromium and chromium-driver, by selenium):
it opens the page, picks a user, clicks an item as that user and sees the list change.

The screenshot goes to tests/artifacts/ (git-ignored); docs/live-page.png is a copy.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_rec.evaluation.synthetic import SyntheticWorld
from tests.integration.api_support import call, serving, with_http
from tests.integration.support import open_store, produce_events, settings_for, wait_for

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _browser() -> Any:
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        message = "chromium and chromium-driver are not installed (apt-get install them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1000")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = _browser()
    try:
        yield driver
    finally:
        driver.quit()


def _others_stream(settings: Any, world: SyntheticWorld, stop: threading.Event) -> None:
    """A trickle of events from users other than u0, so that the panel's chart moves."""
    events = (e for e in world.events(10**6, seed=77) if e["user_id"] != "u0")
    sent = 0
    while not stop.is_set():
        # New event ids: the seed's would be skipped as duplicates.
        batch = [
            next(events) | {"ts": time.time(), "event_id": f"trickle-{sent + n}"} for n in range(40)
        ]
        sent += len(batch)
        produce_events(settings, batch)
        stop.wait(0.2)


def test_the_page_shows_a_users_list_and_a_click_changes_it(
    kafka_server: Any, redis_server: Any, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    name = f"t-page-{uuid.uuid4().hex[:8]}"
    settings = with_http(
        settings_for(kafka_server.bootstrap, redis_server.url, name, kafka_server.flavor)
    )
    world = SyntheticWorld.create(n_users=40, n_items=120, seed=9)
    stop = threading.Event()
    with serving(settings) as url, open_store(settings) as store:
        produce_events(settings, list(world.events(2_000)))
        wait_for(lambda: store.stats().applied_events == 2_000, 90, "the seed events applied")
        # The page's chips are the 24 users whose lists came last: which of the 40 those
        # are depends on how the worker cut the seed into batches. u0 acts last, so that
        # its list is the newest.
        last = {"event_id": "seed-u0-last", "type": "impression", "user_id": "u0"}
        produce_events(settings, [last | {"item_id": "i0", "ts": time.time()}])
        wait_for(lambda: store.stats().applied_events == 2_001, 60, "u0's last event applied")
        trickle = threading.Thread(target=_others_stream, args=(settings, world, stop))
        try:
            browser.get(url + "/")
            wait = WebDriverWait(browser, 30)
            chip = wait.until(
                ec.element_to_be_clickable((By.CSS_SELECTOR, '#recent button[data-user="u0"]'))
            )
            chip.click()
            # Only now: the page shows the 24 users with the latest lists, and the other
            # users' trickle would soon push u0 out of them on a slow machine.
            trickle.start()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items li")) == 10)
            version = int(browser.find_element(By.ID, "meta").get_attribute("data-version"))
            served = call(f"{url}/v1/recommendations/u0").body
            shown = [
                li.get_attribute("data-item")
                for li in browser.find_elements(By.CSS_SELECTOR, "#items li")
            ]
            assert shown == [entry["item_id"] for entry in served["items"]]

            item = shown[0]
            browser.find_element(By.CSS_SELECTOR, f'#items li[data-item="{item}"] button').click()
            wait.until(
                lambda d: int(d.find_element(By.ID, "meta").get_attribute("data-version")) > version
            )
            after = [
                li.get_attribute("data-item")
                for li in browser.find_elements(By.CSS_SELECTOR, "#items li")
            ]
            assert item not in after, "the clicked item is still listed"
            assert len(after) == 10
            status = browser.find_element(By.ID, "status").text
            assert f"click on {item}" in status and "left the list" in status, status
            # The panel shows the worker's figures once two snapshots have come.
            wait.until(lambda d: d.find_element(By.ID, "eps").text not in ("", "–"))
            assert browser.find_element(By.ID, "p99").text.endswith("ms")
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "live-page.png"))
        finally:
            stop.set()
            if trickle.is_alive():
                trickle.join(30)
    assert (ARTIFACTS / "live-page.png").stat().st_size > 10_000
