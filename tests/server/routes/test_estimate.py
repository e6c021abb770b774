"""`POST /estimate` answers a bad model or dataset with the same 4xx as /start, and refuses while a run
trains (the measurement would be wrong and slow the run down)."""

from matelix.training.jobs import RunManager
from matelix.training.rundir import RunDir


def test_a_missing_model_or_dataset_is_the_same_4xx_as_start(client):
    r = client.post("/estimate", json={"model_dir": "models/absent", "csv_path": "demo_chat.csv"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model_dir"
    r = client.post("/estimate", json={"model_dir": "../../etc", "csv_path": "x.csv"})
    assert 400 <= r.status_code < 500


def test_no_estimate_while_a_run_trains(client, home, tiny_model_dir, monkeypatch):
    import shutil

    from matelix.demo import demo_data_path

    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    shutil.copyfile(demo_data_path("demo_chat.csv"), home / "datasets" / "demo_chat.csv")
    monkeypatch.setattr(RunManager, "active", lambda self: RunDir(home / "training_outputs" / "busy_run"))
    r = client.post("/estimate", json={"model_dir": "models/tiny-demo", "csv_path": "demo_chat.csv"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "run_active"
    assert "busy_run" in r.json()["error"]["message"]
