"""The round trip a user makes with the lab: a GGUF model is imported, fine-tuned, exported as GGUF and
imported again; the re-imported model gives the same greedy answers as the lab's fine-tuned model."""

from __future__ import annotations

import csv

import pytest
from tests.conftest import lab_home, wait_for

from matelix.export.gguf_writer import write_gguf
from matelix.export.hf import save_tokenizer
from matelix.export.parity import Model, check_parity
from matelix.export.runner import export_run
from matelix.export.source import load_run_model
from matelix.models.gguf_import import import_gguf
from matelix.settings import Settings
from matelix.training.config import TrainConfig
from matelix.training.jobs import RunManager

pytestmark = pytest.mark.slow


def chat_dataset(path) -> None:
    rows = [{"id": i + 1, "parent_id": "", "system": "", "Benutzer": f"Frage {i}?", "Kontext": "",
             "Assistentin": f"Antwort {i}: gut, danke!"} for i in range(8)]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_import_fine_tune_export_import_gives_the_same_greedy_answers(tmp_path, tiny_model_dir, one_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home = lab_home(tmp_path / "home", tiny_model_dir)
    settings = Settings(home=home)
    chat_dataset(home / "datasets" / "chat.csv")
    # A GGUF of the demo model, as a user would bring one, imported into models/.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    save_tokenizer(tokenizer, tmp_path / "tok")
    gguf_in = home / "models" / "demo-f16.gguf"
    write_gguf(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, tmp_path / "tok", gguf_in, "f16",
               "demo")
    import_gguf(gguf_in, home / "models" / "imported", log=lambda _: None)

    jobs = RunManager(settings)
    rundir = jobs.start(TrainConfig(model_dir="models/imported", csv_path="datasets/chat.csv", train_mode="full",
                                    max_steps=3, chunk_size=64, per_device_train_batch_size=2,
                                    gradient_accumulation_steps=1, preview_steps=100))
    wait_for(lambda: not jobs.alive(rundir) and jobs.settle(rundir).get("state") != "queued",
             what="the fine-tune to end", timeout=600)
    assert jobs.settle(rundir)["state"] == "completed", rundir.tail_log()

    record = export_run(settings, rundir.run_id, "gguf", "f16")
    assert record["parity"]["passed"] is True, record["parity"]
    gguf_out = home / record["path"] / record["facts"]["gguf_file"]
    import_gguf(gguf_out, home / "models" / "reimported", log=lambda _: None)

    lab_model = load_run_model(rundir.path, settings)
    reimported = Model(AutoTokenizer.from_pretrained(home / "models" / "reimported"),
                       AutoModelForCausalLM.from_pretrained(home / "models" / "reimported").eval())
    again = check_parity(Model(lab_model.tokenizer, lab_model.model), reimported, exact=True, loader="reimport")
    assert again["passed"] is True and again["probes_identical"] == 8, again["summary"]
