"""The Chat view in a real headless Chromium: a running run offered as its latest checkpoint, and one message
answered side by side by the base and the run, with the same settings and seed, by keyboard, in both languages."""

from __future__ import annotations

import json

import pytest
from tests.conftest import LiveServer, save_tiny_adapter

from matelix.settings import Settings

pytestmark = pytest.mark.browser

RUN = "tiny-demo_2026-01-01_10-00-00"


def live_run(home, base_dir) -> None:
    """A LoRA run still training, with one complete checkpoint and one being written."""
    run = home / "training_outputs" / RUN
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running"}), encoding="utf-8")
    save_tiny_adapter(run / "checkpoint-3", base_dir, seed=5)
    (run / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}', encoding="utf-8")
    save_tiny_adapter(run / "checkpoint-6", base_dir, seed=6)  # no trainer_state.json: not complete


def test_a_message_is_answered_side_by_side_by_the_base_and_the_running_run(page, lab_home, tiny_model_dir):
    live_run(lab_home, tiny_model_dir)
    latest = f"{RUN}@latest"
    with LiveServer(Settings(home=lab_home)) as server:
        sent = []
        page.on("request", lambda r: r.url.endswith("/chat_stream") and sent.append(json.loads(r.post_data)))
        page.goto(server.url + "/#chat")
        page.wait_for_selector("body[data-ready='true']")
        option = f"#chat-model option[value='{latest}']"
        page.wait_for_selector(option, state="attached")
        assert "latest checkpoint, step 3" in page.text_content(option)
        assert page.locator(f"#chat-model option[value='{RUN}@checkpoint-6']").count() == 0
        page.fill("#chat-max_new_tokens", "6")

        assert "Tick at least two models" in page.text_content("#compare-columns")
        for value in ("models/tiny-demo", latest):  # by keyboard: focus the box, Space ticks it
            page.focus(f"#compare-models input[value='{value}']")
            page.keyboard.press("Space")
        assert page.locator("#compare-columns .compare-col").count() == 2
        page.focus("#compare-text")
        page.keyboard.type("Hallo!")
        page.keyboard.press("Enter")
        page.wait_for_function("[...document.querySelectorAll('#compare-columns .compare-col .msg.assistant .stats')]"
                               ".filter((s) => s.textContent.includes('tok/s')).length === 2")
        columns = page.locator("#compare-columns .compare-col")
        assert "latest checkpoint, step 3" in columns.nth(1).locator("h3").text_content()
        for i in range(2):
            assert columns.nth(i).locator(".msg.assistant .text").text_content()
            assert "completion tokens" in columns.nth(i).locator(".msg.assistant .stats").text_content()
        assert {s["model_dir"] for s in sent} == {"models/tiny-demo", latest}
        assert sent[0]["seed"] == sent[1]["seed"] and sent[0]["temperature"] == sent[1]["temperature"]
        assert f"Same seed for every model: {sent[0]['seed']}" in page.text_content("#compare-columns")
        status = page.evaluate("fetch('/inference_status').then((r) => r.json())")
        served = {m["id"]: m["served_as"] for m in status["loaded"]}
        assert served == {"models/tiny-demo": "model", f"{RUN}@checkpoint-3": "adapter"}

        page.evaluate("localStorage.setItem('matelix.lang', 'de')")
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_selector("#compare-columns .compare-col")
        assert page.text_content("#compare-title") == "Nebeneinander vergleichen"
        assert "neuester Checkpoint, Schritt 3" in page.text_content(option)
        assert page.locator("#compare-columns .compare-col .msg.assistant").count() == 2  # the turn was kept
        assert page.problems.errors == []
