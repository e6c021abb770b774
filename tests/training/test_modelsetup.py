"""The final save: the model lands in the run folder whole, or the folder does not count as a model."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from matelix.training import modelsetup
from matelix.training.config import TrainConfig
from matelix.training.rundir import RunDir


@pytest.fixture
def trained(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


def save(trained, out_dir):
    model, tokenizer = trained
    config = TrainConfig(model_dir="models/tiny", csv_path="datasets/chat.csv")
    return modelsetup.save_final_model(model, tokenizer, out_dir, config, "models/tiny", lambda _: None)


def test_final_model_is_moved_into_the_run_folder_and_loads(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    stale = tmp_path / ".final-tmp"  # left by a save that was killed
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    assert save(trained, tmp_path) == "full"
    assert RunDir(tmp_path).has_model() and not stale.exists()
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()
    AutoModelForCausalLM.from_pretrained(tmp_path)


def test_a_save_failing_part_way_leaves_no_model_behind(trained, tmp_path, monkeypatch):
    def disk_full(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(trained[1]), "save_pretrained", disk_full)  # after the model's config.json
    with pytest.raises(OSError):
        save(trained, tmp_path)
    assert (tmp_path / ".final-tmp" / "config.json").is_file()
    assert not RunDir(tmp_path).has_model() and not (tmp_path / "model.safetensors").exists()


def test_a_move_cut_off_leaves_neither_the_new_nor_an_earlier_model_looking_whole(trained, tmp_path, monkeypatch):
    save(trained, tmp_path)  # an earlier save (e.g. before a resume)
    moved: list[str] = []

    def replace(src, dst):
        if os.path.basename(dst) == "model.safetensors":
            raise OSError(28, "No space left on device")
        moved.append(os.path.basename(dst))
        os.replace(src, dst)

    monkeypatch.setattr(modelsetup, "os", SimpleNamespace(replace=replace))  # only the move into place
    with pytest.raises(OSError):
        save(trained, tmp_path)
    assert not RunDir(tmp_path).has_model()
    assert "config.json" not in moved and "adapter_config.json" not in moved


def test_lora_trains_only_the_new_tokens_rows_not_the_pretrained_ones(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    old = len(tokenizer)
    tokenizer.add_tokens(["Guten Morgen", "vielen Dank"])
    assert modelsetup.grow_vocabulary(model, tokenizer)
    before = model.get_input_embeddings().weight.detach().clone()
    config = TrainConfig(model_dir="m", csv_path="d.csv", train_mode="lora")
    peft_model = modelsetup.apply_lora(model, config, new_token_ids=[old, old + 1], log=lambda _: None)
    trainable = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad}
    hidden = model.config.hidden_size
    token_params = sum(v for n, v in trainable.items() if "trainable_tokens" in n)
    assert token_params == 2 * 2 * hidden  # two rows in the embedding and two in the (untied) head
    assert not any("modules_to_save" in n for n in trainable)

    ids = torch.tensor([[5, old, 7, old + 1, 9]])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    merged = peft_model.merge_and_unload().get_input_embeddings().weight
    assert torch.equal(merged[:old], before[:old])  # pretrained rows untouched
    assert not torch.equal(merged[old:], before[old:])  # the new rows learned
