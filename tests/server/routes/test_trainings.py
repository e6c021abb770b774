"""`PATCH /trainings/{id}`: a run's name and notes change later (only the fields sent), are checked like
TrainConfig, and show in `/trainings`; `/start` and `/datasets/validate` accept each other's field names."""

from matelix.training.config import TrainConfig
from matelix.training.rundir import RunDir


def _run(settings, run_id: str = "tiny_2026-01-01_00-00-00") -> RunDir:
    rundir = RunDir(settings.outputs_dir / run_id)
    rundir.path.mkdir(parents=True)
    rundir.write_config(TrainConfig(model_dir="models/tiny-demo", csv_path="demo_chat.csv", run_name="first try"))
    rundir.update_status(run_id=run_id, state="completed", created_at=1.0, session_started_at=1.0, finished_at=2.0)
    return rundir


def test_name_and_notes_change_later_and_only_the_fields_sent(client, settings):
    rundir = _run(settings)
    r = client.patch(f"/trainings/{rundir.run_id}", json={"notes": "lr too high, loss jumps at step 40"})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["run_name"] == "first try"
    assert r.json()["config"]["notes"] == "lr too high, loss jumps at step 40"
    assert rundir.read_config().notes == "lr too high, loss jumps at step 40"

    client.patch(f"/trainings/{rundir.run_id}", json={"run_name": "  lr 2e-3  "})
    listed = client.get("/trainings").json()[0]["config"]
    assert listed["run_name"] == "lr 2e-3" and listed["notes"].startswith("lr too high")

    client.patch(f"/trainings/{rundir.run_id}", json={"run_name": "", "notes": None})
    config = rundir.read_config()
    assert config.run_name is None and config.notes is None
    assert config.model_dir == "models/tiny-demo"  # nothing else changed


def test_bad_labels_are_4xx_and_leave_the_run_alone(client, settings):
    rundir = _run(settings)
    too_long = client.patch(f"/trainings/{rundir.run_id}", json={"run_name": "x" * 101})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "run_name"
    assert rundir.read_config().run_name == "first try"
    assert client.patch(f"/trainings/{rundir.run_id}", json={"model_dir": "x"}).status_code == 422
    assert client.patch("/trainings/nope", json={"notes": "x"}).status_code == 404


def test_start_and_validate_accept_each_others_field_names(client, home):
    from matelix.demo import demo_data_path

    (home / "datasets" / "demo_chat.csv").write_bytes(demo_data_path("demo_chat.csv").read_bytes())
    # /datasets/validate with /start's names.
    r = client.post("/datasets/validate", json={"csv_path": "demo_chat.csv"})
    assert r.status_code == 200 and r.json()["format"] == "chat"
    # /start with the dataset routes' names: refused for the model it names, not for unknown fields.
    r = client.post("/start", json={"model": "models/absent", "dataset": "demo_chat.csv"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model_dir"
