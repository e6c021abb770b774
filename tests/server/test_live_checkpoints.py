"""A LoRA run still training served as `run@latest`: real Trainer checkpoints load as adapters on the resident
base, and a request after a newer checkpoint gets it."""

from __future__ import annotations

import csv
import shutil

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for

from matelix.server.app import create_app
from matelix.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def lab(home, tiny_model_dir) -> Settings:
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    with (home / "datasets" / "chat.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "parent_id", "system", "Benutzer", "Kontext", "Assistentin"])
        writer.writeheader()
        for i in range(1, 17):
            writer.writerow({"id": i, "parent_id": "", "system": "", "Benutzer": f"Frage {i}?", "Kontext": "",
                             "Assistentin": f"Antwort {i}: gut, danke! " * (1 + i % 4)})
    return Settings(home=home, stop_timeout_s=60)


def latest_step(client, run_id: str) -> int | None:
    cards = {m["id"]: m for m in client.get("/available_models").json()}
    card = cards.get(f"{run_id}@latest")
    return card["step"] if card else None


def test_run_at_latest_follows_a_training_run(lab):
    with TestClient(create_app(lab)) as client:
        r = client.post("/start", json={"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "chunk_size": 128,
                                        "per_device_train_batch_size": 2, "logging_steps": 1, "train_mode": "lora",
                                        "merge_lora_on_save": False, "max_steps": 400, "save_steps": 2,
                                        "preview_steps": 1000})
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        try:
            first = wait_for(lambda: latest_step(client, run_id), what="a complete checkpoint")
            chat = {"messages": [{"role": "user", "content": "Hallo"}], "model_dir": f"{run_id}@latest",
                    "max_new_tokens": 4, "temperature": 0}
            assert client.post("/chat", json=chat).status_code == 200
            wait_for(lambda: (latest_step(client, run_id) or 0) > first, what="a newer checkpoint")
            assert client.post("/chat", json=chat).status_code == 200
            served = {m["id"]: m["served_as"] for m in client.get("/inference_status").json()["loaded"]}
            steps = [int(i.rsplit("-", 1)[1]) for i, how in served.items() if how == "adapter"]
            assert first in steps and max(steps) > first  # the newer checkpoint answered the second request
            assert served["models/tiny"] == "model"  # one resident base for both checkpoints
        finally:
            client.post("/stop", json={"run_id": run_id})
            wait_for(lambda: not client.get("/status", params={"run_id": run_id}).json()["running"], what="the stop")
