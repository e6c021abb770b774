"""The dashboard and the API docs work under the lab's Content-Security-Policy in a real Chromium that enforces
it: every view, a multipart upload from the form, the Monitor's WebSocket, Swagger UI and ReDoc — without a
single policy violation (Chromium reports each as a console error) or a request to another host."""

from __future__ import annotations

import json

import pytest
from tests.conftest import LiveServer

from matelix.settings import Settings

pytestmark = pytest.mark.browser

VIEWS = ("train", "monitor", "runs", "chat", "system")


def _finished_run(home) -> str:
    run_id = "tiny-demo_2026-01-01_00-00-00"
    run = home / "training_outputs" / run_id
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"model_dir": "models/tiny-demo",
                                                        "csv_path": "datasets/demo_chat.csv"}))
    (run / "status.json").write_text(json.dumps({"run_id": run_id, "state": "completed", "step": 3,
                                                 "total_steps": 3, "created_at": 1.0, "session_started_at": 1.0,
                                                 "finished_at": 2.0}))
    (run / "training.log").write_text("line one\nline two\n")
    return run_id


def test_the_dashboard_works_under_its_csp_views_upload_and_websocket(strict_page, lab_home, tmp_path):
    """(Also: the Monitor's live preview names its run.)"""
    page = strict_page
    run_id = _finished_run(lab_home)
    hosts: set[str] = set()
    page.on("request", lambda req: hosts.add(req.url.split("/")[2]))
    previews: list[str] = []
    page.on("request", lambda req: "/livepreview" in req.url and previews.append(req.url))
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    upload = tmp_path / "csp data.csv"
    upload.write_text("text\nEine Zeile.\n", encoding="utf-8")
    with LiveServer(Settings(home=lab_home)) as server:
        page.goto(server.url + "/")
        page.wait_for_selector("body[data-ready='true']")
        for view in VIEWS:
            page.click(f"#tab-{view}")
            page.wait_for_selector(f"#view-{view}:not([hidden])")
        page.click("#tab-monitor")
        page.wait_for_selector("#mon-log[data-last-id='2']")  # the finished run's log, shown by the Monitor
        page.click("#tab-train")
        page.wait_for_selector("#train-dataset option", state="attached")
        page.set_input_files("#train-upload", str(upload))
        page.click("#train-upload-btn")
        page.wait_for_selector("#train-dataset-out .ok")
        # The Monitor follows only live runs over its socket; open one as it does, under the page's policy.
        first = page.evaluate("""() => new Promise((ok, fail) => {
            const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws/logs");
            ws.onmessage = (m) => { ok(m.data); ws.close(); };
            ws.onerror = () => fail(new Error("the WebSocket was refused"));
        })""")
        page.wait_for_load_state("networkidle")
    assert (lab_home / "datasets" / "csp_data.csv").is_file()
    assert json.loads(first)["type"] == "status"
    # The Monitor asks for the live preview of the run it shows, not whichever run the server would pick.
    assert previews and all(u.endswith(f"/livepreview?run_id={run_id}") for u in previews), previews
    assert frames
    assert page.problems.errors == []
    assert hosts == {server.url.split("/")[2]}


@pytest.mark.parametrize("path, ready", [("/docs", ".swagger-ui .opblock"), ("/redoc", "[role=search], .api-content")])
def test_the_api_docs_render_from_local_assets_under_their_csp(strict_page, live_server, path, ready):
    hosts: set[str] = set()
    strict_page.on("request", lambda req: hosts.add(req.url.split("/")[2]))
    strict_page.goto(live_server.url + path)
    strict_page.wait_for_selector(ready, state="attached")
    # ReDoc's sidebar links its maker's logo from cdn.redoc.ly; the policy blocks it, which is the point.
    errors = [e for e in strict_page.problems.errors if "https://cdn.redoc.ly/" not in e]
    assert errors == []
    assert hosts - {"cdn.redoc.ly"} == {live_server.url.split("/")[2]}  # (that logo request was the blocked one)
