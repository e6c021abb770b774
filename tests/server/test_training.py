"""Training routes without a worker: idle answers, 404/409/400 for runs that do not exist or cannot be, and the
log socket on a finished run (metrics_since, torn metrics lines, ending when the client leaves)."""

import threading


def test_idle_lab_answers_with_empty_views(client):
    status = client.get("/status").json()
    assert status["running"] is False and status["state"] is None and status["run_id"] is None
    assert client.get("/logs").json() == {"run_id": None, "lines": [], "last_id": 0}
    assert client.get("/livepreview").json()["batch"] is None
    assert client.get("/trainings").json() == []


def test_missing_runs_and_traversal_are_refused(client):
    assert client.post("/stop").status_code == 409
    assert client.get("/trainings/nope").status_code == 404
    assert client.post("/trainings/nope/resume").status_code == 404
    assert client.delete("/trainings/nope").status_code == 404
    assert client.get("/status", params={"run_id": "../../etc"}).status_code == 400
    r = client.get("/logs", params={"since": -1})
    assert r.status_code == 422 and r.json()["error"]["param"] == "since"


def _finished_run(settings, run_id: str, metrics: list[dict]):
    """A run folder as a finished worker leaves it (no process behind it)."""
    from matelix.training.rundir import RunDir

    rundir = RunDir(settings.outputs_dir / run_id)
    rundir.path.mkdir()
    rundir.config_path.write_text("{}")
    rundir.update_status(run_id=run_id, state="completed", created_at=1.0, session_started_at=1.0,
                         finished_at=2.0)
    rundir.log_path.write_text("one\ntwo\n")
    for record in metrics:
        rundir.append_metric(record)
    return rundir


def test_log_socket_handler_ends_when_the_client_leaves_an_idle_run(settings):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    _finished_run(settings, "tiny_2024-01-01_00-00-00", [{"step": 1, "loss": 2.0}])
    app, ended = create_app(settings), threading.Event()

    async def watched(scope, receive, send):  # the app, noting when a socket's handler has returned
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "websocket":
                ended.set()

    with TestClient(watched) as client, client.websocket_connect("/ws/logs") as ws:
        assert ws.receive_json()["type"] == "status"
        ws.close()
        assert ended.wait(timeout=30), "the /ws/logs handler kept polling after the client left"


def test_log_socket_sends_only_metrics_after_metrics_since_and_then_new_ones(client, settings):
    rundir = _finished_run(settings, "tiny_2024-01-01_00-00-00", [{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)])
    with client.websocket_connect(f"/ws/logs?run_id={rundir.run_id}&since=1&metrics_since=2") as ws:
        events = [ws.receive_json() for _ in range(3)]
        assert [e["type"] for e in events] == ["status", "log", "metric"]
        assert events[1]["id"] == 2 and events[1]["line"] == "two"
        assert events[2]["step"] == 3 and events[2]["run_id"] == rundir.run_id
        with rundir.metrics_path.open("a") as fh:  # a line being written is sent only once it is whole
            fh.write('{"step": 4, "lo')
        rundir.append_metric({"step": 5, "loss": 0.2})  # starts on its own line; the torn one is skipped
        assert ws.receive_json()["step"] == 5


def test_start_accepts_the_old_flat_ngram_names_and_names_the_nested_option_it_refuses(client, settings):
    body = {"model_dir": "models/none", "csv_path": "none.csv", "use_ngrams": True}
    too_short = client.post("/start", json={**body, "ngram_max": 1})
    assert too_short.status_code == 422 and too_short.json()["error"]["param"] == "ngrams.max_len"
    clash = client.post("/start", json={**body, "ngram_top_k": 5, "ngrams": {"top_k": 6}})
    assert clash.status_code == 422 and "ngram_top_k disagree" in clash.json()["error"]["message"]
    # A valid old-style body gets past validation to the checks of the run itself (no such model here).
    missing = client.post("/start", json={**body, "ngram_top_k": 5})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model_dir"
    assert list(settings.outputs_dir.iterdir()) == []


def test_why_a_run_ended_and_refusals_are_said_in_the_request_language(client, settings):
    from matelix.texts import kept

    rundir = _finished_run(settings, "tiny_2026-01-01_10-00-00", [])
    rundir.update_status(state="interrupted",
                         error={**kept("worker ended without a final state (exit code {code})", code=-9),
                                "last_lines": ["two"]})
    german = {"Accept-Language": "de"}
    english = client.get("/status", params={"run_id": rundir.run_id}).json()["error"]
    assert english == {"message": "worker ended without a final state (exit code -9)", "last_lines": ["two"]}
    status = client.get("/status", params={"run_id": rundir.run_id}, headers=german).json()
    assert status["error"]["message"] == "der Worker endete ohne Endzustand (Exit-Code -9)"
    assert client.post("/stop", headers=german).json()["error"]["message"] == "kein Trainingslauf ist aktiv"
