"""The evaluation report of real runs (tiny model, real worker processes): base, checkpoints and final model
with loss and probe answers in evaluation.json and `GET /trainings/{id}/evaluation`; early stopping with the
best checkpoint as the final model."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for

from matelix.server.app import create_app
from matelix.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_model_dir) -> Settings:
    home = tmp_path_factory.mktemp("eval-home")
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir()
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    rows = [{"messages": [{"role": "user", "content": f"Frage {i}?"},
                          {"role": "assistant", "content": f"Antwort {i}: gut, danke! " * (1 + i % 3)}]}
            for i in range(24)]
    (home / "datasets" / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    probes = [{"messages": [{"role": "user", "content": "Wer bist du?"},
                            {"role": "assistant", "content": "Ich bin Mati."}], "expected": "Mati"},
              {"prompt": "Frage 3?", "expected": "gut"},
              {"prompt": "Sag etwas."}]
    (home / "datasets" / "probes.jsonl").write_text("\n".join(json.dumps(p) for p in probes) + "\n")
    return Settings(home=home, stop_timeout_s=60)


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab)) as c:
        yield c


def config(**overrides) -> dict:
    return {"model_dir": "models/tiny", "csv_path": "datasets/chat.jsonl", "chunk_size": 64,
            "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "preview_steps": 0,
            "probe_max_new_tokens": 4, **overrides}


def finished(client, run_id) -> dict:
    return wait_for(lambda: (s := client.get("/status", params={"run_id": run_id}).json())["state"]
                    in ("completed", "failed", "stopped") and s, what=f"run {run_id} to end")


def test_report_holds_base_every_checkpoint_and_final(client, lab):
    r = client.post("/start", json=config(eval_split=0.25, probe_file="datasets/probes.jsonl", max_steps=4,
                                          save_steps=2, learning_rate=0.01))
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    status = finished(client, run_id)
    assert status["state"] == "completed", status
    assert status["final_from_step"] == 4 and status["best_checkpoint"] is None

    report = client.get(f"/trainings/{run_id}/evaluation").json()
    on_disk = json.loads((lab.outputs_dir / run_id / "evaluation.json").read_text())
    assert report == on_disk
    assert report["source"] == "probe_file" and [p["prompt"] for p in report["probes"]] == \
        ["Wer bist du?", "Frage 3?", "Sag etwas."]
    assert [(p["label"], p["step"]) for p in report["points"]] == \
        [("base", 0), ("checkpoint-2", 2), ("checkpoint-4", 4), ("final", 4)]
    for point in report["points"]:
        assert point["eval_loss"] > 0 and point["perplexity"] > 1
        assert [a["probe"] for a in point["answers"]] == [0, 1, 2]
        assert all(isinstance(a["text"], str) for a in point["answers"])
        assert point["answers"][2]["correct"] is None  # no expected answer, no score
        assert point["summary"]["scored"] == 2
    final = report["points"][-1]
    # The final weights are checkpoint-4's: its loss and answers are reused, not computed again.
    assert final["same_as"] == "checkpoint-4" and final["probe_seconds"] == 0.0
    assert final["answers"] == report["points"][2]["answers"]
    base_loss, final_loss = report["points"][0]["eval_loss"], final["eval_loss"]
    assert final_loss < base_loss  # four steps on data like the held-out rows lower its loss
    assert [r["step"] for r in report["loss_curve"]] == [2, 4]
    assert set(report["summary"]["flips"]) == {"wrong_to_right", "right_to_wrong"}
    assert report["summary"]["base"]["scored"] == 2 and report["summary"]["final"]["scored"] == 2
    timing = report["timing"]
    assert timing["probe_seconds"] > 0 and 0 < timing["probe_share"] < 1
    log = (lab.outputs_dir / run_id / "training.log").read_text()
    assert "[eval] base (step 0); eval loss" in log and "3 probes in" in log
    assert "[eval] probes took" in log and "of the run" in log


def test_runs_without_evaluation_have_no_report_and_bad_probe_files_are_refused(client, lab):
    r = client.post("/start", json=config(max_steps=1, save_steps=5))
    run_id = r.json()["run_id"]
    assert finished(client, run_id)["state"] == "completed"
    r = client.get(f"/trainings/{run_id}/evaluation")
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_evaluation"
    assert client.get("/trainings/nope/evaluation").status_code == 404

    (lab.datasets_dir / "bad.jsonl").write_text('{"text": 1}\n')
    for name, status, code in (("datasets/missing.jsonl", 404, "probe_file_not_found"),
                               ("datasets/bad.jsonl", 400, "probe_file_invalid"),
                               ("../../etc/passwd", 400, "path_refused")):
        r = client.post("/start", json=config(probe_file=name, max_steps=1))
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["param"] == "probe_file"
    r = client.post("/start", json=config(early_stopping_patience=2, max_steps=1))
    assert r.status_code == 422 and "eval_split" in r.json()["error"]["message"]


def test_early_stopping_ends_the_run_and_the_final_model_is_the_best_checkpoint(client, lab):
    # A learning rate of 1 makes the eval loss climb after the first steps; patience 2 then stops the run
    # long before max_steps, and the final model is the checkpoint with the lowest eval loss.
    r = client.post("/start", json=config(eval_split=0.25, max_steps=40, save_steps=1, save_total_limit=2,
                                          learning_rate=1.0, early_stopping_patience=2,
                                          load_best_model_at_end=True, max_probes=2))
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    status = finished(client, run_id)
    assert status["state"] == "completed", status
    assert status["step"] < 40
    report = client.get(f"/trainings/{run_id}/evaluation").json()
    curve = {p["step"]: p["eval_loss"] for p in report["loss_curve"]}
    best_step = min(curve, key=curve.get)
    assert status["final_from_step"] == best_step == report["final_from_step"]
    assert status["best_checkpoint"] == f"checkpoint-{best_step}" == report["best_checkpoint"]
    final = report["points"][-1]
    assert final["label"] == "final" and final["from_step"] == best_step
    assert final["same_as"] == f"checkpoint-{best_step}"
    assert final["eval_loss"] == pytest.approx(curve[best_step], rel=1e-4)  # the best weights were loaded
    assert report["source"] == "held_out" and len(report["probes"]) == 2
    log = (lab.outputs_dir / run_id / "training.log").read_text()
    assert f"Final model = best checkpoint checkpoint-{best_step}" in log


def test_an_evaluated_run_before_its_base_evaluation_is_pending_not_missing(client, lab):
    from matelix.training.config import TrainConfig
    from matelix.training.rundir import RunDir

    for run_id, fields, status in (("pending-run", {"eval_split": 0.25}, 200), ("plain-run", {}, 404)):
        rundir = RunDir(lab.outputs_dir / run_id)
        rundir.path.mkdir()
        rundir.write_config(TrainConfig(model_dir="models/tiny", csv_path="datasets/chat.jsonl", **fields))
        rundir.update_status(state="starting", created_at=1.0)
        r = client.get(f"/trainings/{run_id}/evaluation")
        assert r.status_code == status, r.text
    assert client.get("/trainings/pending-run/evaluation").json() == \
        {"run_id": "pending-run", "pending": True, "probes": [], "points": [], "loss_curve": []}
