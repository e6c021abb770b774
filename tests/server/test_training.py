"""Training routes with no run started: idle answers, 404/409/400 for runs that do not exist or cannot be."""


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
