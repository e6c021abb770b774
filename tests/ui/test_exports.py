"""The export panel in the Runs view: export a LoRA run as GGUF from the dashboard, see its progress end in
the parity result, and download it with the API key."""

from __future__ import annotations

import pytest
from tests.conftest import LiveServer
from tests.export.conftest import ADAPTER_RUN, finished_run, one_thread  # noqa: F401 - fixture

from matelix.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
KEY = "ui-export-key"


def test_a_run_is_exported_from_the_runs_view_verified_and_downloaded(page, lab_home, tiny_adapter_dir,
                                                                      one_thread):  # noqa: F811
    finished_run(lab_home, ADAPTER_RUN, tiny_adapter_dir, "lora")
    with LiveServer(Settings(home=lab_home, api_key=KEY)) as server:
        page.add_init_script(f"localStorage.setItem('matelix.apiKey', '{KEY}')")
        page.goto(server.url + "/#runs")
        page.click(f"tr[data-run='{ADAPTER_RUN}']")
        page.wait_for_function("!document.querySelector('#export-start').disabled")
        assert not page.is_disabled("#export-format option[value='adapter']")
        page.select_option("#export-format", "gguf-f16")
        page.click("#export-start")
        page.wait_for_selector("[data-parity='gguf-f16'], #export-error:not([hidden])", timeout=300_000)
        assert page.is_hidden("#export-error"), page.text_content("#export-error")
        parity = page.query_selector("[data-parity='gguf-f16']")
        assert parity.text_content() == "verified: 8/8 probes identical"
        assert "ok" in parity.get_attribute("class")
        with page.expect_download() as info:
            page.click("button[data-download='gguf-f16'][data-file]")
        assert info.value.suggested_filename == f"{ADAPTER_RUN}-f16.gguf"
        assert open(info.value.path(), "rb").read(4) == b"GGUF"
        assert page.problems.errors == []
