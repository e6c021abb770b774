"""Training runs end to end through the API, on CPU with a tiny model: real worker processes, real files.

One module-scoped home holds a copy of the tiny demo model and a small threaded chat dataset.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for

from matelix.server.app import create_app
from matelix.settings import Settings

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_model_dir) -> Settings:
    home = tmp_path_factory.mktemp("train-home")
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir()
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    rows, i = [], 0
    for t in range(16):
        i += 1
        root = i
        rows.append({"id": i, "parent_id": "", "system": "Du bist hilfsbereit.", "Benutzer": f"Frage {t}?",
                     "Kontext": "", "Assistentin": f"Antwort {t}: gut, danke! " * (1 + t % 4)})
        i += 1
        rows.append({"id": i, "parent_id": root, "system": "", "Benutzer": "Und sonst?", "Kontext": "",
                     "Assistentin": "Alles bestens."})
    with (home / "datasets" / "chat.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return Settings(home=home, stop_timeout_s=60)


@pytest.fixture
def client(lab):
    with TestClient(create_app(lab)) as c:
        yield c


def config(**overrides) -> dict:
    return {"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "chunk_size": 128,
            "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
            "preview_steps": 2, "preview_max_new_tokens": 8, **overrides}


def wait_finished(client, run_id) -> dict:
    def ended():
        status = client.get("/status", params={"run_id": run_id}).json()
        return None if status["running"] else status

    return wait_for(ended, what=f"run {run_id} to end")


def assert_generates(path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hallo"}], add_generation_prompt=True,
                                     tokenize=False)
    ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]
    assert "<|Assistentin|>" in (tok.chat_template or "")


@pytest.mark.parametrize("body, status, words", [
    (config(csv_path="datasets/missing.csv"), 404, "not found"),
    (config(model_dir="models/nope"), 404, "no model named"),
    (config(model_dir="nope"), 404, "no model named"),
    (config(csv_path="missing.csv"), 404, "not found"),
    (config(model_dir="../../etc"), 400, "outside"),
    (config(csv_path="../../etc/passwd"), 400, "outside"),
    (config(learning_rate=-1), 422, "learning_rate"),
    (config(bogus_field=1), 422, "unknown field 'bogus_field'"),
])
def test_bad_inputs_are_refused_without_a_run_folder(client, lab, body, status, words):
    before = sorted(p.name for p in lab.outputs_dir.iterdir())
    r = client.post("/start", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    assert sorted(p.name for p in lab.outputs_dir.iterdir()) == before


def test_full_run_survives_restart_and_kill_then_resumes_its_step_count(client, lab):
    r = client.post("/start", json=config(max_steps=40, save_steps=2, eval_split=0.2))
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    assert r.json()["save_dir"] == f"training_outputs/{run_id}" and run_id.startswith("tiny_")
    rundir = lab.outputs_dir / run_id

    status = wait_for(lambda: (s := client.get("/status").json())["step"] and s["step"] >= 3
                      and (rundir / "checkpoint-2" / "trainer_state.json").is_file() and s, what="step 3")
    assert status["running"] and status["state"] in ("running", "stopping") and status["run_id"] == run_id
    assert status["total_steps"] == 40 and 0 < status["progress"] < 1 and status["loss"] > 0
    assert status["config"]["max_steps"] == 40 and status["tokens_seen"] > 0
    assert client.post("/start", json=config()).status_code == 409
    assert client.delete(f"/trainings/{run_id}").status_code == 409

    logs = client.get("/logs", params={"since": 0, "limit": 5}).json()
    assert [line["id"] for line in logs["lines"]] == [1, 2, 3, 4, 5]
    with client.websocket_connect("/ws/logs?since=3") as ws:
        events = [ws.receive_json() for _ in range(6)]
    assert {e["type"] for e in events} >= {"status", "log"}
    log_ids = [e["id"] for e in events if e["type"] == "log"]
    assert log_ids == list(range(4, 4 + len(log_ids)))
    preview = wait_for(lambda: (p := client.get("/livepreview").json())["batch"] and p, what="preview")
    assert any(s["trained"] for s in preview["batch"]["segments"])
    assert any(not s["trained"] for s in preview["batch"]["segments"])

    # A new server process on the same home re-attaches to the live worker and serves its new lines.
    last_id = client.get("/logs", params={"since": 0, "limit": 10_000}).json()["last_id"]
    with TestClient(create_app(lab)) as restarted:
        again = restarted.get("/status").json()
        assert again["run_id"] == run_id and again["running"]
        wait_for(lambda: restarted.get("/logs", params={"since": last_id}).json()["lines"], what="new lines")

        before_kill = restarted.get("/status").json()
        os.kill(_worker_pid(rundir), signal.SIGKILL)
        dead = wait_for(lambda: (s := restarted.get("/status").json())["state"] == "interrupted" and s,
                        what="interrupted")
        assert not dead["running"] and "without a final state" in dead["error"]["message"]
        assert before_kill["step"] >= 3

        listed = {t["run_id"]: t for t in restarted.get("/trainings").json()}
        assert listed[run_id]["state"] == "interrupted"
        r = restarted.post(f"/trainings/{run_id}/resume")
        assert r.status_code == 200, r.text
        resumed_step = int(r.json()["resumed_from"].split("-")[1])
        final = wait_finished(restarted, run_id)
    assert final["state"] == "completed", final
    assert final["step"] == 40 and final["progress"] == 1.0
    steps = [m["step"] for m in client.get(f"/trainings/{run_id}").json()["metrics"] if "loss" in m]
    assert steps == sorted(steps) and steps[-1] == 40 and len(steps) == len(set(steps))
    log_text = (rundir / "training.log").read_text()
    assert f"Resuming from checkpoint-{resumed_step}" in log_text
    assert_generates(rundir)

    detail = client.get(f"/trainings/{run_id}").json()
    assert detail["state"] == "completed" and detail["final_loss"] > 0 and detail["duration_seconds"] > 0
    assert detail["model"] == "models/tiny" and detail["dataset"] == "datasets/chat.csv"
    assert client.delete(f"/trainings/{run_id}").json()["deleted"]
    assert not rundir.exists()
    assert client.get(f"/trainings/{run_id}").status_code == 404


def _worker_pid(rundir: Path) -> int:
    import json

    return int(json.loads((rundir / "status.json").read_text())["pid"])


def test_lora_adapter_run_stops_gracefully_with_checkpoint_and_model(client, lab):
    r = client.post("/start", json=config(train_mode="lora", merge_lora_on_save=False, max_steps=400,
                                          save_steps=1000))
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    wait_for(lambda: (client.get("/status").json()["step"] or 0) >= 2, what="step 2")
    stopping = client.post("/stop").json()
    assert stopping["state"] in ("stopping", "stopped") and stopping["run_id"] == run_id
    final = wait_finished(client, run_id)
    assert final["state"] == "stopped" and final["step"] < 400
    rundir = lab.outputs_dir / run_id
    assert (rundir / f"checkpoint-{final['step']}" / "trainer_state.json").is_file()
    assert (rundir / "adapter_config.json").is_file() and not (rundir / "config.json").exists()
    log_text = (rundir / "training.log").read_text()
    assert "[LoRA] Detected targets: q_proj" in log_text
    assert "[WARNING]" not in log_text  # no library's logger writes into the user's log (DeepSpeed's no-GPU note)
    assert client.post("/stop").status_code == 409
    assert_generates(rundir)


def test_lora_merged_run_completes_and_saves_a_full_model(client, lab):
    r = client.post("/start", json=config(train_mode="lora", max_steps=3, preview_steps=1))
    run_id = r.json()["run_id"]
    final = wait_finished(client, run_id)
    assert final["state"] == "completed", final
    rundir = lab.outputs_dir / run_id
    assert (rundir / "config.json").is_file() and not (rundir / "adapter_config.json").exists()
    sample = client.get("/livepreview", params={"run_id": run_id}).json()["sample"]
    assert sample["prompt"].endswith("<|Assistentin|>\n") and sample["completion"] is not None
    assert_generates(rundir)


def test_two_process_run_completes_on_cpu(client, lab):
    r = client.post("/start", json=config(nproc=2, max_steps=3, preview_steps=0))
    run_id = r.json()["run_id"]
    final = wait_finished(client, run_id)
    assert final["state"] == "completed", (lab.outputs_dir / run_id / "training.log").read_text()[-3000:]
    assert (lab.outputs_dir / run_id / "model.safetensors").is_file()


def test_a_new_run_continues_from_another_runs_checkpoint(client, lab):
    first = client.post("/start", json=config(max_steps=4, save_steps=2, preview_steps=0))
    assert first.status_code == 201, first.text
    source = first.json()["run_id"]
    assert wait_finished(client, source)["state"] == "completed"
    second = client.post("/start", json=config(max_steps=6, save_steps=2, preview_steps=0, resume_from=source))
    assert second.status_code == 201, second.text
    run_id = second.json()["run_id"]
    assert run_id != source
    done = wait_finished(client, run_id)
    assert done["state"] == "completed" and done["step"] == 6
    steps = [m["step"] for m in client.get(f"/trainings/{run_id}").json()["metrics"] if m.get("loss") is not None]
    assert steps and min(steps) > 4  # the step counter continues from the source's checkpoint-4
    assert_generates(lab.outputs_dir / run_id)
