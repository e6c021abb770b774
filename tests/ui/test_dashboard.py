"""The dashboard in a real headless Chromium against a live lab server: loading cleanly, the system view,
the API-key prompt, and a whole session — train the demo model from the form, watch it, reload, stop, chat."""

from __future__ import annotations

import re

import httpx
import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings

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


def test_system_view_shows_each_gpu_the_server_reports(page, live_server):
    # This machine has no GPU, so the page is served a /sysstatus body of the documented shape with one.
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "gpu_util_percent": 87.0, "gpu_mem_used": 40960.0,
           "gpu_mem_total": 81559.0, "gpu_temperature": 61.0}
    body = {"ram_used": 2048, "ram_total": 24000, "ram_percent": 8.5, "cpu_percent": 42.0,
            "gpu_util_percent": 87.0, "gpu_mem_used": 40960.0, "gpu_mem_total": 81559.0, "gpu_temperature": 61.0,
            "gpus": [gpu], "platform": "Linux"}
    page.route("**/sysstatus", lambda route: route.fulfill(json=body))
    open_lab(page, live_server.url + "/#system")
    page.wait_for_selector("#sys-gpus .gpu")
    text = page.text_content("#sys-gpus")
    assert "NVIDIA H100" in text and "87 %" in text and "40.0 GiB / 79.6 GiB" in text and "61 °C" in text


def test_language_switch_relabels_the_page(page, live_server):
    open_lab(page, live_server.url + "/#system")
    page.wait_for_selector("#sys-hardware dd")
    assert page.text_content("#tab-runs") == "Runs"
    page.select_option("#lang-select", "de")
    assert page.text_content("#tab-runs") == "Läufe"
    page.wait_for_function("document.querySelector('#sys-hardware').textContent.includes('Plattform')")
    page.click("#tab-train")
    page.wait_for_selector("label[for='cfg-learning_rate']")
    assert page.text_content("label[for='cfg-learning_rate']") == "Lernrate"
    assert page.problems.errors == []
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


def test_german_is_the_default_for_a_german_browser(browser, live_server):
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    open_lab(page, live_server.url)
    assert page.text_content("#tab-train") == "Training"
    assert page.get_attribute("html", "lang") == "de"
    context.close()


def test_every_view_fits_a_narrow_phone_screen(page, live_server):
    page.set_viewport_size({"width": 390, "height": 844})
    open_lab(page, live_server.url)
    for view in VIEWS:
        page.click(f"#tab-{view}")
        page.wait_for_selector(f"#view-{view}:not([hidden])")
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, view


def test_the_key_dialog_opened_from_the_top_bar_can_be_cancelled(page, live_server):
    page.add_init_script("localStorage.setItem('matelix.apiKey', 'kept')")  # the button shows where a key is in use
    open_lab(page, live_server.url)
    page.click("#key-button")
    page.wait_for_selector("#key-dialog[open]")
    page.click("#key-cancel")
    assert not page.is_visible("#key-dialog")
    assert page.evaluate("localStorage.getItem('matelix.apiKey')") == "kept"


def test_tabs_are_reachable_with_the_keyboard(page, live_server):
    open_lab(page, live_server.url + "/#train")
    page.focus("#tab-train")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#view-monitor:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "tab-monitor"
    assert page.get_attribute("#tab-monitor", "aria-selected") == "true"


def test_form_checks_mirror_the_server_and_server_errors_land_next_to_their_field(page, lab_home):
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-learning_rate")
        requests = []
        page.on("request", lambda r: r.url.endswith("/start") and requests.append(r))

        page.fill("#cfg-learning_rate", "-1")
        page.click("#train-start")
        assert page.text_content("#cfg-learning_rate-err") == "Input should be greater than 0"
        assert page.get_attribute("#cfg-learning_rate", "aria-invalid") == "true"
        assert requests == []  # caught before asking the server

        page.fill("#cfg-learning_rate", "0.0004")
        page.fill("#train-model-hub", "../../etc")
        page.click("#train-start")
        page.wait_for_selector("#cfg-model_dir-err:not([hidden])")
        assert "model_dir" in page.text_content("#cfg-model_dir-err")
        assert len(requests) == 1

        # A 422 for a combination of fields (no single `param`) is shown above the buttons.
        page.fill("#train-model-hub", "")
        page.click("details[data-group='data'] summary")
        page.fill("#cfg-eval_steps", "10")
        page.click("#train-start")
        page.wait_for_selector("#train-error:not([hidden])")
        assert "eval_split" in page.text_content("#train-error")
        assert page.is_hidden("#cfg-model_dir-err")
        assert len(requests) == 2


def test_a_choice_of_numbers_is_sent_as_a_number(page, live_server):
    open_lab(page, live_server.url + "/#train")
    values = page.evaluate("""async () => {
        const { buildForm, fieldsFromOpenApi } = await import('/ui/trainform.js');
        const openapi = {components: {schemas: {TrainConfig: {properties: {
            stage: {enum: [2, 3], type: "integer", default: 2}, mode: {enum: ["a", "b"], type: "string", default: "a"}}}}}};
        const box = document.createElement('div');
        const form = buildForm(box, fieldsFromOpenApi(openapi));
        const before = form.values();
        box.querySelector('#cfg-stage').value = '3';
        box.querySelector('#cfg-mode').value = 'b';
        return [before, form.values()]; }""")
    assert values == [{}, {"stage": 3, "mode": "b"}]  # the default is not sent; 3 is a number


def test_upload_validate_and_preview_a_dataset(page, lab_home, tmp_path):
    upload = tmp_path / "my data.csv"
    upload.write_text("text\nErste Zeile zum Lernen.\nZweite Zeile zum Lernen.\n", encoding="utf-8")
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#train-dataset option", state="attached")
        page.set_input_files("#train-upload", str(upload))
        page.click("#train-upload-btn")
        page.wait_for_selector("#train-dataset-out .ok")
        name = page.eval_on_selector("#train-dataset", "el => el.value")
        assert name.endswith(".csv") and "data" in name
        assert (lab_home / "datasets" / name).read_text(encoding="utf-8") == upload.read_text(encoding="utf-8")

        page.click("#train-validate")
        page.wait_for_selector("#train-report-verdict.good")
        assert "column" in page.text_content("#train-dataset-out")

        page.click("#train-preview")
        page.wait_for_selector("#train-dataset-out .sample mark.trained")
        assert "Erste Zeile" in page.text_content("#train-dataset-out")
        assert page.problems.errors == []


def test_chat_stops_a_streaming_reply_and_keeps_one_conversation_per_model(page, lab_home):
    import shutil

    shutil.copytree(lab_home / "models" / "tiny-demo", lab_home / "models" / "tiny-other")
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#chat")
        page.wait_for_selector("#chat-model option[value='models/tiny-demo']", state="attached")
        page.select_option("#chat-model", "models/tiny-demo")
        page.fill("#chat-max_new_tokens", "4000")
        page.fill("#chat-text", "Erzähl mir eine lange Geschichte.")
        page.click("#chat-send")
        page.wait_for_function("document.querySelector('#chat-messages .msg.assistant .text').textContent.length > 0",
                               timeout=120_000)
        page.click("#chat-stop")
        page.wait_for_function("!document.querySelector('#chat-send').disabled")
        assert "stopped" in page.text_content("#chat-messages .msg.assistant .stats")
        # The cancelled request leaves the engine: no request stays active.
        for _ in range(100):
            if httpx.get(server.url + "/inference_status").json()["active_requests"] == 0:
                break
            page.wait_for_timeout(100)
        assert httpx.get(server.url + "/inference_status").json()["active_requests"] == 0

        page.select_option("#chat-model", "models/tiny-other")
        assert page.locator("#chat-messages .msg").count() == 0
        page.select_option("#chat-model", "models/tiny-demo")
        assert page.locator("#chat-messages .msg").count() == 2
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.select_option("#chat-model", "models/tiny-demo")
        assert page.locator("#chat-messages .msg").count() == 2  # kept in the browser until cleared
        page.click("#chat-clear")
        assert page.locator("#chat-messages .msg").count() == 0
        assert page.problems.errors == []


def test_chat_loads_int8_weights_when_chosen_says_so_and_reloads_exact_weights(page, lab_home):
    def resident(url: str) -> dict:
        (entry,) = httpx.get(url + "/inference_status").json()["loaded"]
        return entry

    with LiveServer(Settings(home=lab_home, offline=True)) as server:
        open_lab(page, server.url + "/#chat")
        page.wait_for_selector("#chat-model option[value='models/tiny-demo']", state="attached")
        page.select_option("#chat-model", "models/tiny-demo")
        assert page.text_content("#chat-quantization option[value='int8']") == "int8 (fastest on a CPU)"
        assert page.text_content("#chat-quantization option[value='fp16']") == "fp16 (exact, fast with many chats)"
        page.select_option("#chat-quantization", "int8")
        page.click("#chat-load")
        page.wait_for_selector("#chat-model-state[data-loaded='true']")
        assert " · int8 · " in page.text_content("#chat-model-state")
        assert resident(server.url)["quantization"] == "int8"
        int8_bytes = resident(server.url)["memory_bytes"]

        # The reply comes from the int8 model (a chat names no weights: it uses the resident ones).
        page.fill("#chat-text", "Hallo!")
        page.click("#chat-send")
        page.wait_for_function("!document.querySelector('#chat-send').disabled && "
                               "document.querySelectorAll('#chat-messages .msg.assistant .stats').length === 1")
        assert resident(server.url)["quantization"] == "int8"

        # Exact weights again: the resident model is reloaded in fp32, and the state says so.
        page.select_option("#chat-quantization", "none")
        page.click("#chat-load")
        page.wait_for_function("document.querySelector('#chat-model-state').textContent.includes('float32')")
        assert "int8" not in page.text_content("#chat-model-state")
        entry = resident(server.url)
        assert entry["quantization"] == "none" and entry["memory_bytes"] > int8_bytes
        assert page.problems.errors == []


def log_lines_on_server(url: str, headers: dict | None = None) -> list[str]:
    answer = httpx.get(url + "/logs", params={"since": 0, "limit": 10000}, headers=headers or {})
    return [item["line"] for item in answer.json()["lines"]]


def start_short_run_from_form(page) -> str:
    """Fill the form for a small, slow-enough run of the demo model and start it; returns the run id."""
    page.wait_for_selector("#cfg-max_steps")
    page.select_option("#train-model", "models/tiny-demo")
    page.select_option("#train-dataset", "demo_chat.csv")
    page.fill("#cfg-max_steps", "3000")
    page.fill("#cfg-gradient_accumulation_steps", "1")
    page.fill("#cfg-chunk_size", "128")
    page.click("details[data-group='preview'] summary")
    page.fill("#cfg-preview_steps", "2")
    page.click("#train-start")
    page.wait_for_url(re.compile(r"#monitor$"))
    page.wait_for_function("document.querySelector('#mon-run').textContent.length > 0")
    return page.text_content("#mon-run")


def test_a_run_from_the_form_is_watched_live_survives_a_reload_stops_chats_resumes_and_is_deleted(page, lab_home):
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        run_id = start_short_run_from_form(page)

        # The progress bar moves and the loss chart gains points while the run is active.
        page.wait_for_function("Number(document.querySelector('#mon-progress').dataset.step) > 0", timeout=120_000)
        first_step = int(page.get_attribute("#mon-progress", "data-step"))
        page.wait_for_function(f"Number(document.querySelector('#mon-progress').dataset.step) > {first_step}")
        page.wait_for_function("Number(document.querySelector('#mon-loss').dataset.points) >= 3")
        points = int(page.get_attribute("#mon-loss", "data-points"))
        page.wait_for_function(f"Number(document.querySelector('#mon-loss').dataset.points) > {points}")
        assert page.is_visible("#mon-loss canvas")
        assert "running" in page.text_content("#mon-state")
        # The live preview: the batch being trained with its trained spans marked, and a generated sample.
        page.wait_for_selector("#mon-preview mark.seg.trained", timeout=60_000)
        page.wait_for_selector("#mon-preview .gen-text", timeout=60_000)

        # Reload mid-run: the same run, its chart history and its log come back, without duplicate lines.
        before_reload = int(page.get_attribute("#mon-loss", "data-points"))
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_function(f"document.querySelector('#mon-run').textContent === '{run_id}'")
        page.wait_for_function(f"Number(document.querySelector('#mon-loss').dataset.points) >= {before_reload}")
        page.wait_for_function("Number(document.querySelector('#mon-log').dataset.lastId) > 0")
        page.wait_for_timeout(1500)  # let the WebSocket deliver a few more lines after the reload
        shown = page.text_content("#mon-log").splitlines()
        assert shown == log_lines_on_server(server.url)[:len(shown)]

        # Stop: the run ends as `stopped` and the buttons follow.
        page.click("#mon-stop")
        page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=120_000)
        assert page.is_disabled("#mon-stop")

        # The run is in the history; "Chat with this model" opens Chat with it selected.
        page.click("#tab-runs")
        page.click(f"tr[data-run='{run_id}'] td:nth-child(2)")
        page.wait_for_function("!document.querySelector('#runs-chat').disabled")
        page.click("#runs-chat")
        page.wait_for_selector("#view-chat:not([hidden])")
        page.wait_for_function(f"document.querySelector('#chat-model').value === '{run_id}'")

        # Load it, send a message, receive a streamed reply with its token counts.
        page.click("#chat-load")
        page.wait_for_selector("#chat-model-state[data-loaded='true']", timeout=120_000)
        page.fill("#chat-max_new_tokens", "24")
        page.fill("#chat-text", "Hallo! Wer bist du?")
        with page.expect_response("**/chat_stream") as streamed:
            page.press("#chat-text", "Enter")
        assert streamed.value.headers["content-type"].startswith("text/event-stream")
        page.wait_for_function("document.querySelector('#chat-send').disabled === false"
                               " && document.querySelectorAll('#chat-messages .msg.assistant').length === 1", timeout=120_000)
        reply = page.text_content("#chat-messages .msg.assistant .text")
        assert reply.strip()
        assert "completion tokens" in page.text_content("#chat-messages .msg.assistant .stats")

        # Resume from Runs: the same run continues where it stopped, its chart keeps its history.
        stopped_at = int(httpx.get(server.url + "/status").json()["step"])
        page.click("#tab-runs")
        page.click(f"tr[data-run='{run_id}'] td:nth-child(2)")
        page.wait_for_function("!document.querySelector('#runs-resume').disabled")
        page.click("#runs-resume")
        page.wait_for_url(re.compile(r"#monitor$"))
        page.wait_for_function(f"Number(document.querySelector('#mon-progress').dataset.step) > {stopped_at}",
                               timeout=120_000)
        assert int(page.get_attribute("#mon-loss", "data-points")) > stopped_at // 2
        page.click("#mon-stop")
        page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=120_000)
        shown = page.text_content("#mon-log").splitlines()
        assert shown == log_lines_on_server(server.url)[:len(shown)]

        # Delete it from Runs (after confirming): gone from the table and from disk.
        page.click("#tab-runs")
        page.click(f"tr[data-run='{run_id}'] td:nth-child(2)")
        page.wait_for_function("!document.querySelector('#runs-delete').disabled")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#runs-delete")
        page.wait_for_selector(f"tr[data-run='{run_id}']", state="detached")
        assert not (lab_home / "training_outputs" / run_id).exists()
        assert page.problems.errors == []


def test_the_monitor_reconnects_with_its_key_after_a_server_restart_without_repeating_a_line(page, lab_home):
    # With an API key, so the WebSocket's ?api_key= is exercised too.
    settings = Settings(home=lab_home, api_key="k3y")
    auth = {"Authorization": "Bearer k3y"}
    page.add_init_script("localStorage.setItem('matelix.apiKey', 'k3y')")
    first = LiveServer(settings).__enter__()
    try:
        started = httpx.post(first.url + "/start", headers=auth, json={"model_dir": "models/tiny-demo", "csv_path": "demo_chat.csv",
                                                         "max_steps": 3000, "gradient_accumulation_steps": 1,
                                                         "chunk_size": 128})
        assert started.status_code == 201, started.text
        open_lab(page, first.url + "/#monitor")
        page.wait_for_function("Number(document.querySelector('#mon-progress').dataset.step) >= 2", timeout=120_000)
    finally:
        first.__exit__(None, None, None)
    before = int(page.get_attribute("#mon-log", "data-last-id"))

    with LiveServer(settings, port=first.port) as second:  # the page reconnects to the same address
        page.wait_for_function(f"Number(document.querySelector('#mon-log').dataset.lastId) > {before + 2}",
                               timeout=120_000)
        # Text and last id read in one go: new lines may arrive between two separate reads.
        text, last_id = page.evaluate("() => { const log = document.querySelector('#mon-log');"
                                      " return [log.textContent, log.dataset.lastId]; }")
        shown = text.splitlines()
        on_server = log_lines_on_server(second.url, auth)
        assert shown == on_server[:len(shown)]
        assert len(shown) == int(last_id)
        httpx.post(second.url + "/stop", headers=auth)
        page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=120_000)
    # The only failures allowed are the page's attempts to reach the server while it was down.
    unexpected = [e for e in page.problems.errors if "ERR_CONNECTION_REFUSED" not in e and "/ws/logs" not in e]
    assert unexpected == []


def test_the_nested_ngram_options_are_form_fields_sent_nested_and_filled_from_a_preset_with_the_old_names(
        page, lab_home):
    import json

    (lab_home / "presets").mkdir(exist_ok=True)  # a preset saved before the options were nested
    (lab_home / "presets" / "old.json").write_text(json.dumps(
        {"name": "old", "config": {"use_ngrams": True, "ngram_top_k": 77}}), encoding="utf-8")
    with LiveServer(Settings(home=lab_home)) as server:
        sent = []

        def refuse(route):  # the server's answer to a nested option it rejects, without starting a run
            sent.append(route.request.post_data_json)
            route.fulfill(status=422, json={"error": {"message": "ngrams.top_k: too many", "type": "invalid_request_error",
                                                      "param": "ngrams.top_k", "code": "validation_error"}})

        page.route("**/start", refuse)
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#train-preset-pick option[value='old']", state="attached")
        assert page.text_content("label[for='cfg-ngrams-top_k']") == "N-grams added at most"
        page.select_option("#train-preset-pick", "old")
        page.click("#train-preset-load")
        assert page.input_value("#cfg-ngrams-top_k") == "77" and page.is_checked("#cfg-use_ngrams")
        assert page.input_value("#cfg-ngrams-max_len") == "12"  # the server's default
        assert page.text_content("label[for='cfg-ngrams-screen_tokens']") == \
            "Tokens the model reads to check phrases (0 = no check)"
        assert page.input_value("#cfg-ngrams-screen_tokens") == "10000"  # the model's check, on by default

        page.click("details[data-group='ngrams'] summary")
        page.fill("#cfg-ngrams-min_count", "1")
        page.click("#train-start")
        assert page.text_content("#cfg-ngrams-min_count-err") == "Input should be greater than or equal to 2"
        assert sent == []
        page.fill("#cfg-ngrams-min_count", "3")
        page.click("#train-start")
        page.wait_for_selector("#cfg-ngrams-top_k-err:not([hidden])")
        assert page.text_content("#cfg-ngrams-top_k-err") == "ngrams.top_k: too many"
        assert sent[0]["use_ngrams"] is True and sent[0]["ngrams"] == {"top_k": 77, "min_count": 3}
        assert not any(key.startswith("ngram_") for key in sent[0])
