"""The server's own words in the German dashboard: dataset findings, upload refusals and error answers come
in the UI language (the page sends it as Accept-Language), and switching the language asks again."""

from __future__ import annotations

import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings

pytestmark = pytest.mark.browser

ORPHAN = "id,parent_id,system,Benutzer,Kontext,Assistentin\n1,,,Hallo,,Hi\n2,77,,Waise,,Antwort\n"


def test_findings_and_refusals_of_the_server_are_german_in_the_german_ui(browser, lab_home, tmp_path):
    (lab_home / "datasets" / "waise.csv").write_text(ORPHAN, encoding="utf-8")
    odd = tmp_path / "notizen.csv"
    odd.write_text("frage,antwort\nWas ist LoRA?,Ein Adapter.\n", encoding="utf-8")
    empty = tmp_path / "leer.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    context = browser.new_context(locale="de-DE", bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    languages = []
    page.on("request", lambda req: "/datasets/" in req.url and languages.append(req.headers.get("accept-language")))
    try:
        with LiveServer(Settings(home=lab_home)) as server:
            page.goto(server.url + "/#train")
            page.wait_for_selector("body[data-ready='true']")
            page.wait_for_selector("#cfg-template_mode")

            # A finding with its row, in German.
            page.select_option("#train-dataset", "waise.csv")
            page.click("#train-validate")
            page.wait_for_selector("#train-report-verdict.bad")
            report = page.text_content("#train-report")
            assert "parent_id '77' gibt es nicht; die Zeile beginnt einen eigenen Gesprächsfaden" in report
            assert "does not exist" not in report

            # An upload that fits no format says in German what it found and what is missing.
            page.set_input_files("#train-upload", str(odd))
            page.click("#train-upload-btn")
            page.wait_for_selector("#train-report-verdict.bad")
            report = page.text_content("#train-report")
            assert "Hochgeladen als notizen.csv" in report
            assert "die Spalte 'text' mit dem Text fehlt (gefundene Spalten: frage, antwort)" in report
            assert "Textspalte" in report and "column_name" not in report

            # An upload refused outright: the server's reason, in German.
            page.set_input_files("#train-upload", str(empty))
            page.click("#train-upload-btn")
            page.wait_for_selector("#train-report p.error")
            assert "sie hat nur leere Zeilen, keinen Datensatz" in page.text_content("#train-report")

            # Switching to English asks for the shown report again, in English.
            page.select_option("#train-dataset", "waise.csv")
            page.click("#train-validate")
            page.wait_for_selector("#train-report-verdict.bad")
            page.select_option("#lang-select", "en")
            page.wait_for_function("document.querySelector('#train-report').textContent"
                                   ".includes(\"parent_id '77' does not exist\")")
            assert "Gesprächsfaden" not in page.text_content("#train-report")
            assert set(languages) == {"de", "en"} and languages[-1] == "en"
    finally:
        context.close()
