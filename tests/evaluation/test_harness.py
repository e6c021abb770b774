"""lm-evaluation-harness on lab models (tiny model, shipped local tasks, no hub): task configs, the
in-process HF backend, the API backend through the lab's /v1/completions (CLI), stored results, and the
background job behind POST /evaluations."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from tests.conftest import lab_home, wait_for

from matelix.evaluation.harness import run_evaluation
from matelix.evaluation.store import latest_by_model, list_results
from matelix.evaluation.tasks import TaskError, describe_tasks, task_configs
from matelix.server.app import create_app
from matelix.settings import Settings

pytestmark = pytest.mark.slow
PROBES = [{"id": 0, "prompt": "Wer bist du?", "expected": "Mati", "reference": "Ich bin Mati."},
          {"id": 1, "prompt": "Sag etwas.", "expected": None, "reference": None}]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, tiny_model_dir) -> Settings:
    home = lab_home(tmp_path_factory.mktemp("lmeval-home"), tiny_model_dir)
    run = home / "training_outputs" / "tiny_run"
    shutil.copytree(tiny_model_dir, run)
    (run / "evaluation.json").write_text(json.dumps({"probes": PROBES}))
    return Settings(home=home)


def test_shipped_tasks_are_local_files_and_unknown_names_are_refused(lab, tiny_model_dir):
    from transformers import AutoTokenizer

    names = {t["name"]: t for t in describe_tasks()}
    assert names["matelix_general_en"]["items"] >= 20 and names["matelix_general_de"]["items"] >= 20
    assert names["matelix_general_de"]["output_type"] == "multiple_choice"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    configs = task_configs(["matelix_general_de", "heldout"], own_run=lab.outputs_dir / "tiny_run",
                           outputs_dir=lab.outputs_dir, tokenizer=tok)
    data = configs[0]["dataset_kwargs"]["data_files"]["test"]
    assert data.endswith("matelix_general_de.jsonl") and json.loads(open(data).readline())["choices"]
    held = configs[1]
    assert held["output_type"] == "generate_until"
    docs = [json.loads(line) for line in open(held["dataset_kwargs"]["data_files"]["test"])]
    assert len(docs) == 1 and docs[0]["target"] == "Mati"  # the probe without an answer is left out
    assert docs[0]["prompt"].startswith(tok.apply_chat_template([{"role": "user", "content": "Wer bist du?"}],
                                                                tokenize=False, add_generation_prompt=True))
    for bad, words in ((["nope"], "unknown task 'nope'"), (["heldout"], "not a run"),
                       (["heldout:../x"], "not a run")):
        with pytest.raises(TaskError, match=words):
            task_configs(bad, own_run=None, outputs_dir=lab.outputs_dir, tokenizer=tok)


def test_hf_backend_and_the_labs_api_agree_and_results_are_stored_per_model(lab, capsys):
    from matelix.cli import main

    stages = []
    hf = run_evaluation(lab, "training_outputs/tiny_run", ["matelix_general_en", "heldout"], limit=6,
                        progress=lambda stage, fraction: stages.append((stage, fraction)))
    assert hf["backend"] == "hf" and hf["items"] == {"matelix_general_en": 6, "heldout": 1}
    assert 0 <= hf["results"]["matelix_general_en"]["acc"] <= 1
    assert set(hf["results"]["heldout"]) >= {"contains", "rouge_l"}
    assert {s for s, _ in stages} >= {"loading", "loglikelihood", "generate_until"}
    assert all(0 <= f <= 1 for _, f in stages)

    assert main(["eval", "training_outputs/tiny_run", "--tasks", "matelix_general_en", "--limit", "6",
                 "--backend", "api", "--home", str(lab.home), "--json"]) == 0
    api = json.loads(capsys.readouterr().out)
    assert api["backend"] == "api" and api["items"] == {"matelix_general_en": 6}
    # Same model, same items: the lab's logprobs give lm-eval the same choices (at most one item apart).
    differ = [a != b for a, b in zip(api["per_item"]["matelix_general_en"], hf["per_item"]["matelix_general_en"],
                                     strict=True)]
    assert len(differ) == 6 and sum(differ) <= 1

    stored = list_results(lab, "training_outputs/tiny_run")
    assert [r["id"] for r in stored] == [api["id"], hf["id"]]
    table = latest_by_model(lab)["training_outputs/tiny_run"]
    assert table["matelix_general_en"]["backend"] == "api" and table["heldout"]["backend"] == "hf"
    assert main(["eval", "models/nope", "--tasks", "matelix_general_en", "--home", str(lab.home)]) == 2


def test_post_evaluations_runs_in_the_background_and_refuses_bad_requests(lab):
    with TestClient(create_app(lab)) as client:
        for body, status, code in (({"model": "models/tiny-demo", "tasks": ["nope"]}, 400, "unknown_task"),
                                   ({"model": "models/nope", "tasks": ["matelix_general_de"]}, 404,
                                    "model_not_found"),
                                   ({"model": "../etc", "tasks": ["matelix_general_de"]}, 400, "path_refused"),
                                   ({"model": "models/tiny-demo", "tasks": []}, 422, None)):
            r = client.post("/evaluations", json=body)
            assert r.status_code == status, r.text
            assert code is None or r.json()["error"]["code"] == code
        assert {t["name"] for t in client.get("/evaluations/tasks").json()} >= {"matelix_general_en", "heldout"}

        r = client.post("/evaluations", json={"model": "models/tiny-demo", "tasks": ["matelix_general_de"],
                                              "limit": 3})
        assert r.status_code == 202 and r.json()["state"] == "running", r.text
        again = client.post("/evaluations", json={"model": "models/tiny-demo", "tasks": ["matelix_general_de"]})
        assert again.status_code == 409 and again.json()["error"]["code"] == "evaluation_running"
        done = wait_for(lambda: (j := client.get("/evaluations").json()["job"])["state"] != "running" and j,
                        what="the evaluation")
        assert done["state"] == "completed" and done["progress"] == 1.0, done
        body = client.get("/evaluations", params={"model": "models/tiny-demo"}).json()
        assert body["results"][0]["id"] == done["result"]["id"]
        assert body["results"][0]["items"] == {"matelix_general_de": 3}
        assert "acc" in body["table"]["models/tiny-demo"]["matelix_general_de"]
