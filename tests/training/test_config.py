"""TrainConfig: seed defaults, unknown fields named, invalid combinations explained, YAML/JSON files."""

import json

import pytest
from pydantic import ValidationError

from matelix.training.config import ConfigFileError, NgramOptions, TrainConfig, load_config_file, overlay

BASE = {"model_dir": "models/tiny-demo", "csv_path": "datasets/demo_chat.csv"}


def test_defaults_follow_the_seed():
    c = TrainConfig(**BASE)
    assert (c.learning_rate, c.per_device_train_batch_size, c.gradient_accumulation_steps) == (4e-4, 1, 7)
    assert (c.num_train_epochs, c.chunk_size, c.lora_r, c.lora_alpha) == (3, 1024, 8, 16)
    assert c.merge_lora_on_save and c.packing and c.device == "auto" and c.train_mode == "full"
    assert (c.use_ngrams, c.ngrams.max_len, c.ngrams.top_k) == (False, 12, 1500)


def test_unknown_field_is_rejected_by_name():
    with pytest.raises(ValidationError) as err:
        TrainConfig(**BASE, learnin_rate=0.1)
    assert err.value.errors()[0]["type"] == "extra_forbidden"
    assert err.value.errors()[0]["loc"] == ("learnin_rate",)


@pytest.mark.parametrize("extra, words", [
    ({"learning_rate": -1}, "greater than 0"),
    ({"eval_steps": 5}, "eval_split"),
    ({"device": "cpu", "precision": "fp16"}, "fp16"),
    ({"nproc": 2, "device": "mps"}, "mps"),
    ({"lora_target_modules": []}, "lora_target_modules"),
])
def test_invalid_values_and_combinations_are_explained(extra, words):
    with pytest.raises(ValidationError) as err:
        TrainConfig(**BASE, **extra)
    assert words in str(err.value)


def test_config_file_round_trips_as_yaml_and_json(tmp_path):
    (tmp_path / "c.yaml").write_text("model_dir: models/x\ncsv_path: datasets/y.csv\ntrain_mode: lora\n")
    assert load_config_file(tmp_path / "c.yaml").train_mode == "lora"
    (tmp_path / "c.json").write_text(TrainConfig(**BASE).model_dump_json())
    assert load_config_file(tmp_path / "c.json") == TrainConfig(**BASE)


def test_config_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**BASE, "bogus": 1}))
    with pytest.raises(ConfigFileError, match="bad.json: unknown field 'bogus'"):
        load_config_file(bad)
    (tmp_path / "broken.yaml").write_text("model_dir: [unclosed\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config_file(tmp_path / "broken.yaml")


@pytest.mark.parametrize("seed, ok", [(0, True), (2**32 - 1, True), (2**32, False), (-1, False), (2**64, False)])
def test_seed_stays_in_numpys_seed_range(seed, ok):
    if ok:
        assert TrainConfig(**BASE, seed=seed).seed == seed
    else:
        with pytest.raises(ValidationError, match="seed"):
            TrainConfig(**BASE, seed=seed)


def test_ngram_options_are_one_nested_model_and_the_old_flat_names_still_work(tmp_path):
    nested = TrainConfig(**BASE, use_ngrams=True, ngrams={"top_k": 500, "min_count": 2})
    assert nested.ngrams == NgramOptions(top_k=500, min_count=2)
    assert nested.ngrams.max_len == NgramOptions().max_len == 12  # defaults in one place
    flat = TrainConfig.model_validate({**BASE, "use_ngrams": True, "ngram_top_k": 500, "ngram_min_count": 2})
    assert flat == nested
    assert "ngram_top_k" not in flat.model_dump() and flat.model_dump()["ngrams"]["top_k"] == 500
    (tmp_path / "old.yaml").write_text("model_dir: models/x\ncsv_path: d.csv\nngram_max: 20\n")
    assert load_config_file(tmp_path / "old.yaml").ngrams.max_len == 20
    with pytest.raises(ValidationError, match="ngram_top_k disagree"):
        TrainConfig.model_validate({**BASE, "ngram_top_k": 5, "ngrams": {"top_k": 6}})
    with pytest.raises(ValidationError) as err:
        TrainConfig(**BASE, ngrams={"max_len": 1})
    assert err.value.errors()[0]["loc"] == ("ngrams", "max_len")


def test_overlay_merges_nested_options_option_by_option():
    merged = overlay({"ngram_top_k": 5, "model": "models/a"}, {"ngrams": {"min_count": 3}, "seed": 1})
    assert merged == {"model_dir": "models/a", "ngrams": {"top_k": 5, "min_count": 3}, "seed": 1}
