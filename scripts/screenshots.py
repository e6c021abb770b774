"""Take 1280×800 screenshots of every dashboard view from a real short run, into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--steps 40]

It builds a fresh lab home (demo datasets, the tiny demo model and the real SmolLM2-135M-Instruct, copied
from ./models/ when it is there) in a temp folder, serves it on a free loopback port, and drives Debian's
Chromium (/usr/bin/chromium) through the dashboard with the real model: validate the dataset (with the time
estimate), run a named LoRA run and a named full fine-tune from the form, watch it, compare the two, chat
with the fine-tuned model, and look at the system view. It trains the real model, so on two CPU cores it
takes many minutes (far more while other work keeps the cores busy).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from matelix.demo.assets import ensure_demo_assets
from matelix.demo.real_model import REAL_MODEL_NAME
from matelix.server.live import ThreadedServer
from matelix.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 800}


def wait_steps(page, steps: int) -> None:
    page.wait_for_function(f"Number(document.querySelector('#mon-progress').dataset.step) >= {steps}",
                           timeout=600_000)


def stop_and_wait(page) -> None:
    page.click("#mon-stop")
    page.wait_for_selector("#mon-state.state-stopped[data-running='false']", timeout=300_000)


MODEL = f"models/{REAL_MODEL_NAME}"
DATASET = "demo_persona.jsonl"


def start_from_form(page, steps: int, preset: str, name: str) -> None:
    page.goto(page.url.split("#")[0] + "#train")
    page.wait_for_selector("#cfg-max_steps")
    page.click(f"[data-preset='{preset}']")
    page.select_option("#train-model", MODEL)
    page.select_option("#train-dataset", DATASET)
    page.fill("#cfg-run_name", name)
    page.fill("#cfg-max_steps", str(steps))
    page.fill("#cfg-gradient_accumulation_steps", "1")
    page.fill("#cfg-chunk_size", "256")
    page.evaluate("document.querySelectorAll('details[data-group=preview], details[data-group=data]')"
                  ".forEach((d) => { d.open = true; })")
    page.fill("#cfg-preview_steps", "10")
    page.fill("#cfg-eval_split", "0.1")
    page.fill("#cfg-eval_steps", "10")
    page.click("#train-start")
    page.wait_for_url("**#monitor")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps of the full fine-tune")
    args = parser.parse_args()
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
            page = browser.new_page(viewport=VIEWPORT, locale="en-US")
            page.set_default_timeout(120_000)
            page.goto(url + "/#train")
            page.wait_for_selector("#cfg-max_steps")
            page.select_option("#train-model", MODEL)
            page.select_option("#train-dataset", DATASET)
            page.fill("#cfg-gradient_accumulation_steps", "1")
            page.fill("#cfg-chunk_size", "256")
            page.click("#train-validate")
            page.wait_for_selector("#train-report-verdict")
            page.wait_for_selector("#train-estimate-text", timeout=1_800_000)  # minutes on a busy CPU
            shot(page, "train")

            # A LoRA run first (for the comparison), then the full fine-tune that the monitor shows.
            start_from_form(page, 400, "lora", "LoRA r8, lr 2e-4")
            wait_steps(page, args.steps // 2)
            stop_and_wait(page)
            start_from_form(page, 400, "full", "Full fine-tune, lr 4e-4")
            wait_steps(page, args.steps)
            page.wait_for_selector("#mon-preview .gen-text")
            page.evaluate("window.scrollTo(0, 0)")
            shot(page, "monitor")
            page.evaluate("document.querySelector('#mon-log').closest('.card').scrollIntoView()")
            shot(page, "monitor-live")
            stop_and_wait(page)

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
            page.wait_for_selector("#view-chat:not([hidden])")
            page.click("#chat-load")
            page.wait_for_selector("#chat-model-state[data-loaded='true']")
            page.fill("#chat-system", "Du bist eine hilfsbereite Assistentin.")
            for n, text in enumerate(("Hallo! Wer bist du?", "Was ist ein Gradient?"), start=1):
                page.fill("#chat-text", text)
                page.press("#chat-text", "Enter")
                page.wait_for_function("!document.querySelector('#chat-send').disabled && document"
                                       f".querySelectorAll('#chat-messages .msg.assistant .stats').length === {n}")
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
    print(f"screenshots in {args.out}/ (lab home {home})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
