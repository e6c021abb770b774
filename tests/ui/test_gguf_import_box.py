"""The Train view's GGUF import box lists the .gguf files under models/ and shows a refused import's reason,
in English and German."""

from __future__ import annotations

import pytest
from tests.conftest import LiveServer
from tests.server.routes.test_catalog_gguf import _write_gguf

from matelix.settings import Settings

pytestmark = pytest.mark.browser


def test_import_box_lists_files_and_shows_why_an_import_is_refused(page, lab_home):
    _write_gguf(lab_home / "models" / "Odd-Model.gguf", "notanarch")
    with LiveServer(Settings(home=lab_home)) as server:
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='true']")
        page.click("#train-gguf summary")
        page.wait_for_selector("#gguf-file option[value='models/Odd-Model.gguf']", state="attached")
        assert page.input_value("#gguf-name") == "odd-model"
        page.click("#gguf-import")
        page.wait_for_selector("#gguf-msg.error")
        assert "'notanarch' is not supported" in page.text_content("#gguf-msg")
        assert not (lab_home / "models" / "odd-model").exists()
        page.select_option("#lang-select", "de")
        assert page.text_content("#train-gguf summary") == "GGUF-Datei importieren"
        assert page.text_content("#gguf-import") == "Importieren"
