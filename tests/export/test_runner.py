"""Exports of finished runs end to end (tiny demo model): each format is written, loaded back the way
other tools load it and replayed on the probe set; refusals and a full disk leave nothing behind."""

from __future__ import annotations

import errno
import json
import os

import pytest
from tests.export.conftest import ADAPTER_RUN, FULL_RUN

from matelix.export import runner
from matelix.export.runner import ExportRejected, export_run, list_exports

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_hf_export_is_a_clean_portable_folder_that_answers_like_the_lab(export_lab):
    record = export_run(export_lab, FULL_RUN, "hf")
    folder = export_lab.home / record["path"]
    assert record["path"] == f"training_outputs/{FULL_RUN}/exports/hf"
    assert sorted(p.name for p in folder.iterdir()) == [
        "chat_template.jinja", "config.json", "export.json", "generation_config.json", "model.safetensors",
        "parity.json", "tokenizer.json", "tokenizer_config.json"]
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "extra_special_tokens" not in tok_config and "<|Assistentin|>" in tok_config["additional_special_tokens"]
    assert "<|Assistentin|>" in tok_config["chat_template"]
    assert json.loads((folder / "config.json").read_text())["rope_theta"] == 10000.0
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] is True and parity["probes_identical"] == parity["probes"] == 8
    assert parity["logprob_max_abs_diff"] == 0.0 and record["parity"]["summary"] == "verified: 8/8 probes identical"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_adapter_export_names_its_base_and_peft_reproduces_the_lab(export_lab):
    record = export_run(export_lab, ADAPTER_RUN, "adapter")
    folder = export_lab.home / record["path"]
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "models/tiny-demo"
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert record["facts"]["vllm_compatible"] is True
    assert record["parity"]["loader"] == "peft" and record["parity"]["passed"] is True


def test_adapter_export_of_a_full_run_is_refused(export_lab):
    with pytest.raises(ExportRejected) as info:
        export_run(export_lab, FULL_RUN, "adapter")
    assert info.value.status == 422 and "no LoRA adapter" in info.value.message
    assert not (export_lab.outputs_dir / FULL_RUN / "exports" / "adapter").exists()


def test_gguf_f16_of_a_lora_run_matches_every_token_and_has_an_ollama_modelfile(export_lab):
    from gguf import GGUFReader

    record = export_run(export_lab, ADAPTER_RUN, "gguf", "f16")
    folder = export_lab.home / record["path"]
    assert record["name"] == "gguf-f16" and record["parity"]["passed"] is True
    assert record["parity"]["loader"] == "transformers-gguf"
    reader = GGUFReader(str(folder / record["facts"]["gguf_file"]))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert "<|Assistentin|>" in reader.fields["tokenizer.chat_template"].contents()
    modelfile = (folder / "Modelfile").read_text()
    assert f"FROM ./{record['facts']['gguf_file']}" in modelfile and 'PARAMETER stop "</s>"' in modelfile
    assert "<|Benutzer|>" in modelfile and record["facts"]["ollama_template"] == "matelix-chat"


def test_gguf_q8_0_reports_token_share_and_logprob_difference(export_lab):
    record = export_run(export_lab, FULL_RUN, "gguf", "q8_0")
    parity = record["parity"]
    assert parity["passed"] is None and parity["exact_required"] is False
    assert 0.0 < parity["token_match_share"] <= 1.0 and parity["logprob_mean_abs_diff"] > 0.0
    assert parity["summary"].startswith("approximate: ")
    assert record["facts"]["tensor_types"].get("Q8_0", 0) > 0


def test_exports_are_listed_per_run_newest_first(export_lab):
    names = [e["name"] for e in list_exports(runner.find_run(export_lab, FULL_RUN), export_lab.home)]
    assert {"hf", "gguf-q8_0"} <= set(names)


@pytest.mark.parametrize("run_id, fmt, quant, status", [
    ("no-such-run", "hf", None, 404), ("../models", "hf", None, 400), (FULL_RUN, "onnx", None, 400),
    (FULL_RUN, "hf", "q8_0", 400), (FULL_RUN, "gguf", "q4_0", 400)])
def test_bad_requests_are_refused_before_anything_is_written(export_lab, run_id, fmt, quant, status):
    with pytest.raises(ExportRejected) as info:
        export_run(export_lab, run_id, fmt, quant)
    assert info.value.status == status


def test_out_must_stay_inside_home(export_lab, tmp_path):
    with pytest.raises(ExportRejected) as info:
        export_run(export_lab, FULL_RUN, "hf", out=str(tmp_path / "elsewhere"))
    assert info.value.status == 400 and info.value.param == "out"


def test_a_full_disk_is_507_and_leaves_no_partial_export(export_lab, monkeypatch):
    from matelix.export import hf

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf, "write_hf_folder", no_space)
    out = "exports-elsewhere/hf"
    with pytest.raises(ExportRejected) as info:
        export_run(export_lab, FULL_RUN, "hf", out=out)
    assert info.value.status == 507 and info.value.code == "storage_error"
    assert list((export_lab.home / "exports-elsewhere").iterdir()) == []


def test_what_a_killed_export_left_behind_is_removed_by_the_next_one(export_lab):
    exports = export_lab.outputs_dir / FULL_RUN / "exports"
    exports.mkdir(exist_ok=True)
    dead = exports / ".hf.partial-999999999-abc"  # no such pid
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half")
    runner.remove_stale_partials(exports / "hf")
    assert not dead.exists()
    alive = exports / f".hf.partial-{os.getpid()}-abc"
    alive.mkdir()
    runner.remove_stale_partials(exports / "hf")
    assert alive.is_dir()
    alive.rmdir()
