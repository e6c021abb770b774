"""The dashboard as a daily tool, in a real headless Chromium: remembered settings, presets and "Reuse
settings"; named runs with notes and a config diff; a complete German UI; no dead ends or misleading states;
narrow screens and dark mode. Runs the tests need are written to disk as a finished worker leaves them,
except where a real run is the point (Start, Stop, Resume)."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.rundir import RunDir

pytestmark = pytest.mark.browser


def open_lab(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")


def finished_run(home, run_id: str, *, losses=(3.0, 2.5, 2.0), with_model: bool = False, **config) -> RunDir:
    """A run folder as a finished worker leaves it: config, status, metrics (and the model when asked)."""
    rundir = RunDir(home / "training_outputs" / run_id)
    rundir.path.mkdir(parents=True)
    rundir.write_config(TrainConfig(model_dir="models/tiny-demo", csv_path="demo_chat.csv", **config))
    rundir.update_status(run_id=run_id, state="completed", created_at=1_700_000_000.0,
                         session_started_at=1_700_000_000.0, finished_at=1_700_000_060.0, step=len(losses),
                         total_steps=len(losses), loss=losses[-1], model="tiny-demo", dataset="demo_chat.csv",
                         train_mode=config.get("train_mode", "full"))
    for step, loss in enumerate(losses, 1):
        rundir.append_metric({"step": step, "loss": loss, "learning_rate": config.get("learning_rate", 4e-4)})
    rundir.log_path.write_text("done\n", encoding="utf-8")
    if with_model:
        for item in (home / "models" / "tiny-demo").iterdir():
            if item.is_file():
                shutil.copy(item, rundir.path / item.name)
    return rundir


def value(page, selector: str) -> str:
    return page.eval_on_selector(selector, "el => el.value")


NOT_FOUND_IN_CONSOLE = "console: Failed to load resource: the server responded with a status of 404 (Not Found)"


def problems(page) -> list[str]:
    """The page's problems, less the 404 `no_evaluation` the Runs and Monitor views ask for and expect for a
    run that has no evaluation yet (and Chromium's console line for each of them, which names no URL)."""
    expected = [e for e in page.problems.errors if re.match(r"HTTP 404 \S+/trainings/[^/]+/evaluation$", e)]
    console = [e for e in page.problems.errors if e == NOT_FOUND_IN_CONSOLE]
    rest = [e for e in page.problems.errors if e not in expected and e != NOT_FOUND_IN_CONSOLE]
    return rest + console[len(expected):]


# -- 1. remembered settings, presets, reuse ------------------------------------------------------------------

def test_the_form_remembers_its_settings_and_saves_loads_and_deletes_named_presets(page, lab_home):
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-learning_rate")
        page.select_option("#train-dataset", "demo_chat.csv")
        page.click("[data-preset='lora']")
        page.fill("#cfg-learning_rate", "0.0025")
        page.fill("#cfg-run_name", "my first LoRA")

        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_selector("#train-notice:not([hidden])")
        assert value(page, "#cfg-learning_rate") == "0.0025"
        assert value(page, "#cfg-train_mode") == "lora"
        assert value(page, "#cfg-run_name") == "my first LoRA"
        assert value(page, "#train-dataset") == "demo_chat.csv"

        page.fill("#train-preset-name", "LoRA fast")
        page.click("#train-preset-save")
        page.wait_for_function("document.querySelector('#train-preset-msg').textContent.includes('LoRA fast')")
        stored = httpx.get(server.url + "/presets/LoRA fast").json()["config"]
        assert stored["learning_rate"] == 0.0025 and stored["train_mode"] == "lora"
        assert stored["csv_path"] == "demo_chat.csv" and "run_name" not in stored  # a preset names no run

        page.click("#train-reset")
        assert value(page, "#cfg-learning_rate") == "0.0004" and value(page, "#cfg-train_mode") == "full"
        page.select_option("#train-preset-pick", "LoRA fast")
        page.click("#train-preset-load")
        assert value(page, "#cfg-learning_rate") == "0.0025" and value(page, "#cfg-train_mode") == "lora"

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#train-preset-delete")
        page.wait_for_function("document.querySelector('#train-preset-msg').textContent.includes('deleted')")
        assert httpx.get(server.url + "/presets").json() == []
        assert problems(page) == []


# -- 2. named runs, notes, reuse, compare with a config diff, names in Chat ----------------------------------

def test_runs_have_names_and_editable_notes_reuse_fills_the_form_and_compare_shows_the_config_diff(page, lab_home):
    finished_run(lab_home, "tiny-demo_2026-01-01_10-00-00", run_name="baseline", learning_rate=4e-4)
    finished_run(lab_home, "tiny-demo_2026-01-01_11-00-00", losses=(3.0, 2.2, 1.8), run_name="LoRA high lr",
                 train_mode="lora", learning_rate=2.5e-3, with_model=True)
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#runs")
        row = "tr[data-run='tiny-demo_2026-01-01_11-00-00']"
        page.wait_for_selector(row)
        assert "LoRA high lr" in page.text_content(row)

        page.click(f"{row} td:nth-child(2)")
        page.wait_for_function("document.querySelector('#runs-detail-title').textContent === 'LoRA high lr'")
        page.fill("#runs-notes", "loss falls fast; try 1e-3 next")
        page.click("#runs-labels-save")
        page.wait_for_function("document.querySelector('#runs-labels-msg').textContent === 'Saved.'")
        on_server = httpx.get(server.url + "/trainings/tiny-demo_2026-01-01_11-00-00").json()["config"]
        assert on_server["notes"] == "loss falls fast; try 1e-3 next"

        # Compare: the legend names the runs, the diff lists the settings that differ.
        page.check("input[data-compare='tiny-demo_2026-01-01_10-00-00']")
        page.check("input[data-compare='tiny-demo_2026-01-01_11-00-00']")
        page.wait_for_selector("#runs-diff tr[data-key='learning_rate']")
        legend = page.text_content("#runs-overlay")
        assert "baseline" in legend and "LoRA high lr" in legend
        diff = page.text_content("#runs-diff")
        assert "Learning rate" in diff and "2.5E-3" in diff and "4E-4" in diff and "LoRA (small adapters)" in diff
        assert page.locator("#runs-diff tr[data-key='seed']").count() == 0  # equal settings are left out

        # Reuse settings: the Train view opens at its top, filled with the run's settings (but a new name).
        page.click("#runs-reuse")
        page.wait_for_selector("#view-train:not([hidden])")
        page.wait_for_function("document.querySelector('#cfg-learning_rate') && "
                               "document.querySelector('#cfg-learning_rate').value === '0.0025'")
        assert value(page, "#cfg-train_mode") == "lora" and value(page, "#cfg-run_name") == ""
        assert "LoRA high lr" in page.text_content("#train-notice")

        # Chat lists the run by its name.
        page.click("#tab-chat")
        page.wait_for_selector("#chat-model option[value='tiny-demo_2026-01-01_11-00-00']", state="attached")
        assert "LoRA high lr" in page.text_content("#chat-model option[value='tiny-demo_2026-01-01_11-00-00']")
        assert problems(page) == []


# -- 3. a complete German UI with one number format --------------------------------------------------------

def test_the_german_ui_translates_help_texts_choices_terms_and_formats_numbers_the_german_way(browser, lab_home):
    finished_run(lab_home, "tiny-demo_2026-01-01_10-00-00", learning_rate=1.25e-3, lr_scheduler="cosine_with_restarts")
    context = browser.new_context(locale="de-DE", bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        with LiveServer(Settings(home=lab_home)) as server:
            open_lab(page, server.url + "/#train")
            page.wait_for_selector("#cfg-lora_r-help", state="attached")
            # Every English label has a German one.
            missing = page.evaluate("""async () => {
                const { STRINGS } = await import('/ui/strings.js');
                return Object.keys(STRINGS.en).filter((k) => !(k in STRINGS.de)); }""")
            assert missing == []
            assert page.text_content("#cfg-lora_r-help").startswith("Rang der Adapter-Matrizen")
            assert page.text_content("#cfg-learning_rate-help").startswith("Höchste Lernrate")
            options = page.eval_on_selector_all("#cfg-lr_scheduler option", "els => els.map((e) => e.textContent)")
            assert "Kosinus mit Neustarts" in options and "cosine_with_restarts" not in options
            assert "Volles Fine-Tuning (alle Gewichte)" in page.text_content("#cfg-train_mode")
            assert page.text_content("label[for='cfg-precision']").startswith("Zahlenformat")
            assert "Vorlage" not in page.text_content("#view-train") and "Genauigkeit" not in page.text_content("#view-train")
            text = page.text_content("#view-train")
            for internal in ("chunk_size", "column_name", "null = all"):
                assert internal not in text

            page.click("#tab-runs")
            page.click("tr[data-run='tiny-demo_2026-01-01_10-00-00'] td:nth-child(2)")
            page.wait_for_selector("#runs-config dd", state="attached")
            config = page.text_content("#runs-config")
            assert "Lernrate" in config and "1,25E-3" in config and "Kosinus mit Neustarts" in config
            assert "learning_rate" not in config
            assert page.get_attribute("#runs-loss", "data-axes") == "Schritt / Loss"
            assert page.get_attribute("#runs-lr", "data-axes") == "Schritt / Lernrate"

            page.click("#tab-system")
            page.wait_for_function("document.querySelector('#sys-ram').textContent.includes('%')")
            assert re.search(r"\d+,\d GiB|\d+ MiB", page.text_content("#sys-ram"))
            assert re.search(r"\(\d+(,\d)? %\)", page.text_content("#sys-ram"))
            assert "." not in page.text_content("#sys-ram").split("(")[1]  # no English decimal point
    finally:
        context.close()


# -- 4. Start drops nobody mid-page and says why it is off ----------------------------------------------------

def test_start_is_explained_while_a_run_is_active_and_views_open_at_their_top(page, lab_home):
    running = {"running": True, "state": "running", "run_id": "tiny-demo_2026-01-01_10-00-00", "step": 3,
               "total_steps": 100, "config": {"run_name": "nightly", "model_dir": "models/tiny-demo"}}
    with LiveServer(Settings(home=lab_home)) as server:
        page.route("**/status", lambda route: route.fulfill(json=running))
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-learning_rate")
        page.wait_for_selector("#train-start-why:not([hidden])")
        assert page.is_disabled("#train-start")
        assert "nightly" in page.text_content("#train-start-why")
        assert page.get_attribute("#train-start", "aria-describedby") == "train-start-why"

        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        assert page.evaluate("window.scrollY") > 200
        page.click("#tab-monitor")
        page.wait_for_selector("#view-monitor:not([hidden])")
        assert page.evaluate("window.scrollY") == 0
        assert page.is_visible("#mon-progress")


# -- 5. Chat remembers, and shows no empty bubble while the model loads ---------------------------------------

def test_chat_remembers_model_system_prompt_and_sampling_and_says_it_is_loading(page, lab_home):
    shutil.copytree(lab_home / "models" / "tiny-demo", lab_home / "models" / "tiny-other")
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#chat")
        page.wait_for_selector("#chat-model option[value='models/tiny-other']", state="attached")
        page.select_option("#chat-model", "models/tiny-other")
        page.fill("#chat-system", "Antworte knapp.")
        page.fill("#chat-temperature", "0.3")

        held = []
        page.route("**/chat_stream", lambda route: held.append(route))
        page.fill("#chat-text", "Hallo!")
        page.click("#chat-send")
        page.wait_for_selector("#chat-messages .msg.assistant.pending")
        assert page.text_content("#chat-messages .msg.assistant .text") == "Loading the model…"
        assert page.text_content("#chat-model-state") == "Loading…"
        for _ in range(50):  # the route handler records the request
            if held:
                break
            page.wait_for_timeout(100)
        sent = json.loads(held[0].request.post_data)
        assert sent["system"] == "Antworte knapp." and sent["temperature"] == 0.3
        events = [{"delta": "Hallo zurück."}, {"finish_reason": "stop", "usage": {"prompt_tokens": 5, "completion_tokens": 3}}]
        held[0].fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                        body="".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n")
        page.wait_for_function("document.querySelector('#chat-messages .msg.assistant .text').textContent === 'Hallo zurück.'")
        assert page.locator("#chat-messages .msg.pending").count() == 0

        page.unroute("**/chat_stream")
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        page.wait_for_function("document.querySelector('#chat-model').value === 'models/tiny-other'")
        assert value(page, "#chat-system") == "Antworte knapp." and value(page, "#chat-temperature") == "0.3"
        assert page.locator("#chat-messages .msg").count() == 2  # the saved conversation of that model


# -- 6. formats by what they are, checked on upload, no internal names ----------------------------------------

def test_formats_are_named_with_examples_and_an_upload_is_checked_at_once(page, lab_home, tmp_path):
    odd = tmp_path / "notes.csv"
    odd.write_text("frage,antwort\nWas ist LoRA?,Ein Adapter.\n", encoding="utf-8")
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-template_mode")
        page.click("#train-formats summary")
        assert page.locator("#train-formats .format pre.example").count() == 6
        assert "Chat threads in a CSV" in page.text_content("#train-formats")
        assert "Benutzer" in page.text_content("#train-formats .format[data-format='chat'] pre")
        assert "Chat threads in a CSV (MaTeLiX)" in page.text_content("#cfg-template_mode")

        # The text column is asked for only where it applies.
        page.select_option("#train-dataset", "demo_chat.csv")
        assert page.is_hidden("#cfg-column_name")
        page.select_option("#cfg-template_mode", "column")
        assert page.is_visible("#cfg-column_name")
        page.select_option("#cfg-template_mode", "auto")

        page.set_input_files("#train-upload", str(odd))
        page.click("#train-upload-btn")
        page.wait_for_selector("#train-report-verdict.bad")
        report = page.text_content("#train-report")
        assert "cannot be trained on as it is" in report
        assert "frage, antwort" in report and "'text'" in report  # what was found, and what is missing
        assert "chunk_size" not in page.text_content("#view-train")

        # A file that fits: the report says what was found.
        page.select_option("#train-dataset", "demo_chat.csv")
        page.click("#train-validate")
        page.wait_for_selector("#train-found")
        assert page.text_content("#train-found").startswith("Found: Chat threads in a CSV (MaTeLiX)")


# -- 7. Resume in the Monitor, a clean log, preview beside the report -----------------------------------------

def test_a_stopped_run_resumes_from_the_monitor_its_log_has_no_library_warnings_and_preview_sits_beside_the_report(page, lab_home):
    # Validating asks for a time estimate (a child process training a few steps); it is not the point here and
    # would compete with the run for the CPU, so the server's answer is given.
    page.route("**/estimate", lambda route: route.fulfill(json={
        "rows": 1, "tokens": 1, "steps": 1, "seconds_per_step": 1.0, "measured_steps": 2, "setup_seconds": 1.0,
        "seconds": 2.0, "device": "cpu", "long": False, "suggestions": []}))
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-max_steps")
        page.select_option("#train-model", "models/tiny-demo")
        page.select_option("#train-dataset", "demo_chat.csv")
        page.click("#train-validate")
        page.wait_for_selector("#train-report-verdict")
        page.click("#train-preview")
        page.wait_for_selector("#train-samples .sample")
        report, samples = page.locator("#train-report").bounding_box(), page.locator("#train-samples").bounding_box()
        assert page.is_visible("#train-report-verdict")  # the report stays
        assert samples["x"] > report["x"] + report["width"] - 1 and abs(samples["y"] - report["y"]) < 2

        page.fill("#cfg-max_steps", "3000")
        page.fill("#cfg-gradient_accumulation_steps", "1")
        page.fill("#cfg-chunk_size", "128")
        page.fill("#cfg-run_name", "resumable")
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        page.click("#train-start")
        page.wait_for_url(re.compile(r"#monitor$"))
        assert page.evaluate("window.scrollY") == 0  # the Monitor opens at its progress bar
        page.wait_for_function("document.querySelector('#mon-name').textContent === 'resumable'")
        remembered = json.loads(page.evaluate("localStorage.getItem('matelix.train.settings')"))
        assert remembered["chunk_size"] == 128 and "run_name" not in remembered  # a new run gets a new name
        page.wait_for_function("Number(document.querySelector('#mon-progress').dataset.step) >= 2", timeout=120_000)
        assert page.is_hidden("#mon-resume")

        page.click("#mon-stop")
        page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=120_000)
        page.wait_for_selector("#mon-resume:not([hidden])")
        stopped_at = int(httpx.get(server.url + "/status").json()["step"])
        page.click("#mon-resume")
        page.wait_for_function(f"Number(document.querySelector('#mon-progress').dataset.step) > {stopped_at}",
                               timeout=120_000)
        assert page.is_hidden("#mon-resume")
        log = page.text_content("#mon-log")
        assert "Warning" not in log and "warnings.warn" not in log
        httpx.post(server.url + "/stop")
        page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=120_000)
        assert problems(page) == []


# -- 8. narrow screens --------------------------------------------------------------------------------------

def test_the_runs_table_keeps_run_ids_on_one_line_and_says_it_scrolls_on_a_phone(page, lab_home):
    finished_run(lab_home, "tiny-demo_2026-01-01_10-00-00")
    with LiveServer(Settings(home=lab_home)) as server:
        page.set_viewport_size({"width": 390, "height": 844})
        open_lab(page, server.url + "/#runs")
        page.wait_for_selector("tr[data-run] code")
        # measured in one script: the runs list re-renders while it polls, so a handle taken in one call
        # may be detached by the next
        page.wait_for_function("document.querySelector('tr[data-run] code')?.getBoundingClientRect().height > 0")
        height, line = page.evaluate("""() => {
            const code = document.querySelector('tr[data-run] code');
            return [code.getBoundingClientRect().height, parseFloat(getComputedStyle(code).lineHeight) || 20];
        }""")
        assert height < 2 * line  # one line, not one character per line
        assert page.is_visible("#runs-scroll-hint")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


# -- 9. dark mode -----------------------------------------------------------------------------------------------

def test_dark_mode_follows_the_system_and_the_switch_overrides_it(browser, live_server):
    context = browser.new_context(color_scheme="dark", locale="en-US")
    page = context.new_page()
    try:
        open_lab(page, live_server.url + "/#system")
        assert page.get_attribute("html", "data-theme") == "dark"
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 150  # dark
        page.select_option("#theme-select", "light")
        assert page.get_attribute("html", "data-theme") == "light"
        page.reload()
        page.wait_for_selector("body[data-ready='true']")
        assert page.get_attribute("html", "data-theme") == "light"  # the choice is remembered
        assert value(page, "#theme-select") == "light"
    finally:
        context.close()


# -- 10. no misleading states -----------------------------------------------------------------------------------

def test_no_key_button_without_a_key_and_a_hub_model_says_why_token_statistics_are_missing(page, lab_home):
    with LiveServer(Settings(home=lab_home)) as server:
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-learning_rate")
        assert page.is_hidden("#key-button")
        page.select_option("#train-dataset", "demo_chat.csv")
        page.fill("#train-model-hub", "HuggingFaceTB/SmolLM2-135M-Instruct")
        page.click("#train-validate")
        page.wait_for_selector("#train-tokens-note")
        assert "local model" in page.text_content("#train-tokens-note")


# -- the time estimate before Start -------------------------------------------------------------------------

def test_validation_is_followed_by_a_time_estimate_of_the_form_settings_and_a_long_run_offers_cheaper_ones(page, lab_home):
    # The measurement itself (a child process training a few real steps) is tested in
    # tests/training/test_estimate.py; on a busy machine it takes minutes, so here the server's answer is given.
    asked = []
    short = {"rows": 306, "tokens": 19159, "steps": 40, "seconds_per_step": 0.21, "measured_steps": 2,
             "setup_seconds": 2.0, "seconds": 10.4, "device": "cpu", "long": False, "suggestions": []}
    long = {"rows": 900, "tokens": 10**6, "steps": 5000, "seconds_per_step": 4.2, "measured_steps": 2,
            "setup_seconds": 3.0, "seconds": 21003.0, "device": "cpu", "long": True,
            "suggestions": [{"code": "shorter_sequences", "chunk_size": 512}, {"code": "lora"}]}

    def answer(route):
        asked.append(json.loads(route.request.post_data))
        route.fulfill(json=short if len(asked) == 1 else long)

    with LiveServer(Settings(home=lab_home)) as server:
        page.route("**/estimate", answer)
        open_lab(page, server.url + "/#train")
        page.wait_for_selector("#cfg-max_steps")
        page.select_option("#train-model", "models/tiny-demo")
        page.select_option("#train-dataset", "demo_chat.csv")
        page.fill("#cfg-max_steps", "40")
        page.fill("#cfg-chunk_size", "64")
        page.click("#train-validate")
        page.wait_for_selector("#train-estimate-text")
        assert asked[0]["model_dir"] == "models/tiny-demo" and asked[0]["csv_path"] == "demo_chat.csv"
        assert asked[0]["max_steps"] == 40 and asked[0]["chunk_size"] == 64  # the settings in the form
        text = page.text_content("#train-estimate-text")
        assert "Expected duration on this machine: about 10 s" in text and "40 optimizer steps" in text
        assert "CPU" in text and page.locator("#train-estimate [data-suggestion]").count() == 0

        page.click("#train-estimate-btn")
        page.wait_for_selector("#train-estimate-text.warn")
        assert "5.8 h" in page.text_content("#train-estimate-text")
        page.click("#train-estimate [data-suggestion='1']")
        assert value(page, "#cfg-train_mode") == "lora"
        page.click("#train-estimate [data-suggestion='0']")
        assert value(page, "#cfg-chunk_size") == "512"
        assert problems(page) == []
