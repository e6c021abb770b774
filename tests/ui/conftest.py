"""Browser fixtures: Debian's Chromium driven by the `playwright` package (never `playwright install`).

`MATELIX_TEST_CHROMIUM` points at another Chromium binary. Without one the browser tests are skipped, and the terminal summary says so in capitals, so a
green run without a browser is never mistaken for a tested dashboard.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("MATELIX_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SKIP_REASON = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium); it is missing"
_skipped: list[str] = []


def pytest_collection_modifyitems(config, items) -> None:
    if CHROMIUM.exists():
        return
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
            _skipped.append(item.nodeid)


def pytest_terminal_summary(terminalreporter) -> None:
    if _skipped:
        terminalreporter.section("BROWSER TESTS SKIPPED", sep="!", red=True, bold=True)
        terminalreporter.write_line(f"{len(_skipped)} dashboard tests did NOT run: {SKIP_REASON}.", red=True, bold=True)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageProblems:
    """Console errors, uncaught exceptions and failed requests seen by a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"exception: {exc}"))
        page.on("requestfailed", lambda req: self._failed(req))
        page.on("response", lambda res: res.status >= 400 and self.errors.append(f"HTTP {res.status} {res.url}"))

    def _failed(self, request) -> None:
        # A stream the page itself aborts (chat Stop, a closed page) is not a failure of the lab.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.errors.append(f"request failed: {request.url} {request.failure}")


@pytest.fixture
def lab_home(home, tiny_model_dir) -> Iterator[Path]:
    """A home holding the demo datasets and a copy of the tiny demo model as models/tiny-demo. Workers still
    alive afterwards (a test that failed mid-run) are killed, so no training outlives its test."""
    from matelix.demo import DEMO_DATASETS, demo_data_path
    from matelix.training.rundir import RunDir, process_alive

    for name in DEMO_DATASETS:
        shutil.copyfile(demo_data_path(name), home / "datasets" / name)
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    yield home
    for run in (home / "training_outputs").iterdir():
        status = RunDir(run).read_status()
        if process_alive(status.get("pid"), status.get("pid_started")):
            os.killpg(int(status["pid"]), signal.SIGKILL)


def _page(browser, *, bypass_csp: bool) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US", bypass_csp=bypass_csp)
    pg = context.new_page()
    # Generous: two shared CPU cores may be busy with other work while a run trains.
    pg.set_default_timeout(90_000)
    pg.problems = PageProblems(pg)
    yield pg
    context.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A page for driving the dashboard. Playwright's `wait_for_function` evaluates strings, which the lab's
    Content-Security-Policy forbids, so this page ignores the CSP; `strict_page` enforces it."""
    yield from _page(browser, bypass_csp=True)


@pytest.fixture
def strict_page(browser) -> Iterator:
    """A page that enforces the lab's Content-Security-Policy, as a user's browser does."""
    yield from _page(browser, bypass_csp=False)
