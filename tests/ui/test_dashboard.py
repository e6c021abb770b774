"""The dashboard in a real headless Chromium against a live lab server: loading cleanly, the system view,
the API-key prompt, and a whole session — train the demo model from the form, watch it, reload, stop, chat."""

from __future__ import annotations

import re

import pytest

from matelix.settings import Settings
from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

VIEWS = ("train", "monitor", "runs", "chat", "system")


def open_lab(page, url: str) -> None:
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='true']")


def test_every_view_loads_without_console_errors_or_failed_requests(page, lab_home):
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url)
        for view in VIEWS:
            page.click(f"#tab-{view}")
            page.wait_for_selector(f"#view-{view}:not([hidden])")
        page.wait_for_selector("#train-fields .field", state="attached")  # the form was built from the server's schema
        page.wait_for_load_state("networkidle")
        assert page.problems.errors == []


def test_system_view_shows_live_usage_and_hardware(page, live_server):
    open_lab(page, live_server.url + "/#system")
    page.wait_for_function("document.querySelector('#sys-cpu').textContent.includes('%')")
    assert re.search(r"\d+(\.\d+)? %", page.text_content("#sys-cpu"))
    assert "MiB" in page.text_content("#sys-ram") or "GiB" in page.text_content("#sys-ram")
    page.wait_for_selector("#sys-hardware dd")
    assert "Python" in page.text_content("#sys-hardware")
    assert page.problems.errors == []


def test_language_switch_relabels_the_page(page, live_server):
    open_lab(page, live_server.url)
    assert page.text_content("#tab-runs") == "Runs"
    page.select_option("#lang-select", "de")
    assert page.text_content("#tab-runs") == "Läufe"
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.text_content("#tab-runs") == "Läufe"  # the choice is remembered


def test_api_key_prompt_loads_data_and_returns_on_a_wrong_key(page, make_settings):
    with LiveServer(make_settings(api_key="s3cret")) as server:
        open_lab(page, server.url + "/#system")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", "s3cret")
        page.click("#key-form button[type=submit]")
        page.wait_for_function("document.querySelector('#sys-cpu').textContent.includes('%')")
        assert not page.is_visible("#key-dialog")
        assert page.evaluate("localStorage.getItem('matelix.apiKey')") == "s3cret"

        page.evaluate("localStorage.setItem('matelix.apiKey', 'wrong')")
        page.reload()
        page.wait_for_selector("#key-dialog[open]")
        assert page.is_visible("#key-error")  # says the stored key was rejected
        page.fill("#key-input", "s3cret")
        page.click("#key-form button[type=submit]")
        page.wait_for_function("document.querySelector('#sys-cpu').textContent.includes('%')")
