"""Take 1280×800 screenshots of every dashboard view from a real short run, into docs/screenshots/.

    nice .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--steps 4]

It builds a fresh lab home (demo datasets, the tiny demo model and the real SmolLM2-135M-Instruct, copied
from ./models/ when it is there) in a temp folder, serves it on a free loopback port, and drives Debian's
Chromium (/usr/bin/chromium) through the dashboard with the real model: validate the dataset (with the time
estimate), run two short named LoRA runs from the form (two learning rates, the second twice as long),
watch the second, compare the two, chat with its fine-tuned model, and look at the system view. It trains the
real model: it took 30 minutes on two CPU cores at a load average of about 12 (other work running); idle
cores are faster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from matelix.demo.assets import ensure_demo_assets
from matelix.demo.real_model import REAL_MODEL_NAME
from matelix.server.live import ThreadedServer
from matelix.settings import Settings
from matelix.training.rundir import RunDir, process_alive

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}


def wait_steps(page, steps: int) -> None:
    page.wait_for_function(f"Number(document.querySelector('#mon-progress').dataset.step) >= {steps}",
                           timeout=1_800_000)


def stop_workers(home: Path) -> None:
    """Kill the workers of runs still training (the script failed midway): none outlives the script."""
    for run in (home / "training_outputs").iterdir():
        status = RunDir(run).read_status()
        if process_alive(status.get("pid"), status.get("pid_started")):
            os.killpg(int(status["pid"]), signal.SIGKILL)


MODEL = f"models/{REAL_MODEL_NAME}"
DATASET = "demo_persona.jsonl"


def start_lora_run(page, steps: int, learning_rate: str, name: str) -> None:
    """A LoRA run of `steps` optimizer steps from the form, with a live preview halfway (no held-out
    evaluation: on a busy CPU it would take longer than the run)."""
    page.goto(page.url.split("#")[0] + "#train")
    page.wait_for_selector("#cfg-max_steps")
    page.click("[data-preset='lora']")
    page.select_option("#train-model", MODEL)
    page.select_option("#train-dataset", DATASET)
    page.fill("#cfg-run_name", name)
    page.fill("#cfg-learning_rate", learning_rate)
    page.fill("#cfg-max_steps", str(steps))
    page.fill("#cfg-gradient_accumulation_steps", "1")
    page.fill("#cfg-chunk_size", "256")
    page.evaluate("document.querySelectorAll('#view-train details.group').forEach((d) => { d.open = true; })")
    page.fill("#cfg-preview_steps", str(steps // 2))
    page.fill("#cfg-preview_max_new_tokens", "24")
    page.click("#train-start")
    page.wait_for_url("**#monitor")


def chat(page) -> None:
    """Load the model picked in Chat and ask it two questions of the kind demo_persona.jsonl teaches (English,
    which the small model speaks best), near-greedy."""
    page.wait_for_selector("#view-chat:not([hidden])")
    page.click("#chat-load")
    page.wait_for_selector("#chat-model-state[data-loaded='true']")
    page.fill("#chat-system", "You are Mati, the assistant of MaTeLiX Lab.")
    page.fill("#chat-temperature", "0.2")
    page.fill("#chat-max_new_tokens", "64")
    for n, text in enumerate(("What is LoRA?", "What is a learning rate?"), start=1):
        page.fill("#chat-text", text)
        page.press("#chat-text", "Enter")
        page.wait_for_function("!document.querySelector('#chat-send').disabled && document"
                               f".querySelectorAll('#chat-messages .msg.assistant .stats').length === {n}")


def wait_completed(page) -> None:
    page.wait_for_selector("#mon-state.state-completed[data-running='false']", timeout=1_800_000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of the second LoRA run (the first "
                                                             "makes half as many)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a killed script still stops its runs' workers
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="matelix-shots-"))
    settings = Settings(home=home)
    local = Path("models") / REAL_MODEL_NAME
    if (local / "config.json").is_file():  # converted once already: copy instead of converting again
        shutil.copytree(local, home / "models" / REAL_MODEL_NAME)
    ensure_demo_assets(settings, log=lambda *_: None)
    server = ThreadedServer(settings).__enter__()
    url = server.url
    shot = lambda page, name: page.screenshot(path=str(args.out / f"{name}.png"))  # noqa: E731
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            # Playwright's wait_for_function evaluates strings, which the lab's Content-Security-Policy forbids.
            context = browser.new_context(viewport=VIEWPORT, locale="en-US", bypass_csp=True)
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.goto(url + "/#train")
            page.wait_for_selector("#cfg-max_steps")
            page.select_option("#train-model", MODEL)
            page.select_option("#train-dataset", DATASET)
            page.fill("#cfg-gradient_accumulation_steps", "1")
            page.fill("#cfg-chunk_size", "256")
            page.click("#train-validate")
            page.wait_for_selector("#train-report-verdict")
            # Minutes on a busy CPU; an estimate that failed ends the script with the page's reason.
            page.wait_for_selector("#train-estimate-text, #train-estimate .error", timeout=1_800_000)
            if page.query_selector("#train-estimate .error"):
                raise SystemExit(f"the time estimate failed: {page.text_content('#train-estimate')}")
            page.evaluate("document.querySelector('#train-report').scrollIntoView(); window.scrollBy(0, -70)")
            shot(page, "train")

            # Two LoRA runs that differ in the learning rate (for the comparison); the monitor shows the second.
            start_lora_run(page, max(2, args.steps // 2), "2e-4", "LoRA, lr 2e-4")
            wait_completed(page)
            start_lora_run(page, args.steps, "1e-3", "LoRA, lr 1e-3")
            wait_steps(page, args.steps // 2 + 1)  # past the halfway preview
            page.wait_for_selector("#mon-preview .gen-text")
            page.evaluate("window.scrollTo(0, 0)")
            shot(page, "monitor")
            page.evaluate("document.querySelector('#mon-log').closest('.card').scrollIntoView()")
            shot(page, "monitor-live")
            wait_completed(page)

            page.click("#tab-runs")
            page.wait_for_selector("tr[data-run]")
            for box in page.query_selector_all("input[data-compare]"):
                box.check()
            page.wait_for_selector("#runs-overlay canvas")
            page.click("tr[data-run] td:nth-child(2)")
            page.wait_for_selector("#runs-detail:not([hidden])")
            page.wait_for_timeout(500)
            shot(page, "runs")

            page.click("#runs-chat")
            chat(page)
            shot(page, "chat")

            page.click("#tab-system")
            page.wait_for_timeout(20_000)  # some samples in the usage history
            shot(page, "system")

            page.set_viewport_size({"width": 390, "height": 844})
            page.click("#tab-monitor")
            page.wait_for_timeout(500)
            shot(page, "monitor-narrow")
            browser.close()
    finally:
        server.__exit__(None, None, None)
        stop_workers(home)
    print(f"screenshots in {args.out}/ (lab home {home})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
