"""N-gram vocabulary optimisation: exact counting, phrase choice, lossless encoding with the new tokens,
mean-initialised rows, the token map and the CLI."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tests.conftest import greedy_chat_answers
from transformers import AutoModelForCausalLM, AutoTokenizer

from matelix.data import load_dataset, render_sample
from matelix.data.template import ROLE_TOKENS
from matelix.data.validate import load_prepared_tokenizer
from matelix.demo import demo_data_path
from matelix.training.config import NgramOptions
from matelix.training.ngram_count import OccurrenceIndex, count_ngrams, layout
from matelix.training.ngrams import MAP_FILE, apply_ngrams, mine

DEMO_CONFIG = SimpleNamespace(ngrams=NgramOptions(min_count=2))  # the run's other defaults suit the demo files


def _texts(name: str, tokenizer) -> list[str]:
    loaded = load_dataset(demo_data_path(name))
    return [render_sample(s, tokenizer, loaded.render_mode) for s in loaded.samples]


@pytest.fixture
def tokenizer(tiny_model_dir):
    return load_prepared_tokenizer(tiny_model_dir)


def test_counts_match_a_brute_force_counter_of_tuples():
    rng = random.Random(0)
    seqs = [[rng.choice([1, 2, 3, 4, 5, 6]) for _ in range(rng.randint(0, 40))] for _ in range(60)]
    counts = count_ngrams(layout(seqs), max_len=6, min_count=3, closed_only=False)
    got = {tuple(counts.tokens(k)): int(counts.count[k]) for k in range(counts.count.size)}
    expected = Counter(tuple(s[i:i + n]) for s in seqs for n in range(2, 7) for i in range(len(s) - n + 1))
    assert got == {k: c for k, c in expected.items() if c >= 3}


def test_closed_counting_drops_ngrams_always_inside_a_longer_one():
    counts = count_ngrams(layout([[7, 1, 2, 3, 8], [9, 1, 2, 3, 4], [1, 2, 5]]), max_len=5, min_count=2)
    got = {tuple(counts.tokens(k)): int(counts.count[k]) for k in range(counts.count.size)}
    assert got == {(1, 2): 3, (1, 2, 3): 2}  # (2, 3) always follows 1: only (1, 2, 3) is kept


def test_special_tokens_split_ngrams():
    counts = count_ngrams(layout([[1, 2, 99, 1, 2, 99]] * 3, excluded_ids=[99]), max_len=4, min_count=2)
    assert all(99 not in counts.tokens(k) for k in range(counts.count.size))


def test_occurrence_index_finds_every_position():
    ids = layout([[1, 2, 1, 2, 1], [2, 1, 2]])
    index = OccurrenceIndex(ids)
    assert index.find([1, 2]).tolist() == [0, 2, 7]
    assert index.find([2, 1, 2]).tolist() == [1, 6]
    assert index.find([5]).tolist() == []


def test_mining_the_code_heavy_demo_text_saves_at_least_15_percent(tokenizer):
    result = mine(tokenizer, _texts("demo_text.csv", tokenizer), NgramOptions(min_count=2), log=lambda s: None)
    assert result.code_heavy and result.max_len >= 32
    assert result.saved_pct >= 15, result.totals()
    backend = tokenizer.backend_tokenizer
    for p in result.phrases:
        assert len(p.text) >= 4 and p.used >= 2
        assert backend.encode(p.text, add_special_tokens=False).ids == p.source_ids
        assert not any(role in p.text for role in ROLE_TOKENS.values()) and "</s>" not in p.text


def test_prose_phrases_stay_within_a_line(tokenizer):
    result = mine(tokenizer, _texts("demo_chat.csv", tokenizer), NgramOptions(min_count=2), log=lambda s: None)
    assert not result.code_heavy and result.saved_pct > 0
    for p in result.phrases:
        assert "\n" not in p.text.strip(), p.text


@pytest.mark.parametrize("name", ["demo_text.csv", "demo_chat.csv"])
def test_every_dataset_text_round_trips_and_uses_the_new_tokens(tiny_model_dir, tmp_path, name):
    tokenizer = load_prepared_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    texts = _texts(name, tokenizer)
    vocab_before = len(tokenizer)
    role_ids = {tokenizer.convert_tokens_to_ids(t) for t in ROLE_TOKENS.values()}

    totals = apply_ngrams(tokenizer, model, texts, DEMO_CONFIG, tmp_path, log=lambda s: None)

    assert totals["added_tokens"] > 0 and len(tokenizer) == vocab_before + totals["added_tokens"]
    used_new = 0
    n_tokens = 0
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
        used_new += sum(i >= vocab_before for i in ids)
        n_tokens += len(ids)
        for role in ROLE_TOKENS.values():  # role tokens still encode as one id each
            assert text.count(role) == sum(i == tokenizer.convert_tokens_to_ids(role) for i in ids)
    assert used_new > 0 and role_ids.isdisjoint(range(vocab_before, len(tokenizer)))
    assert n_tokens == totals["tokens_after"] < totals["tokens_before"]


def test_token_map_and_mean_initialised_rows(tiny_model_dir, tmp_path):
    tokenizer = load_prepared_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    head_before = model.get_output_embeddings().weight.detach().clone()

    apply_ngrams(tokenizer, model, _texts("demo_text.csv", tokenizer), DEMO_CONFIG, tmp_path,
                 log=lambda s: None)

    data = json.loads((tmp_path / MAP_FILE).read_text(encoding="utf-8"))
    assert data["totals"]["tokens_after"] < data["totals"]["tokens_before"]
    assert data["totals"]["vocab_after"] == len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    assert [f.name for f in tmp_path.iterdir()] == [MAP_FILE]  # no temp file left behind
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for entry in data["tokens"]:
        assert tokenizer.convert_tokens_to_ids(entry["phrase"]) == entry["id"]
        assert tokenizer.decode([entry["id"]]) == entry["phrase"]
        assert entry["estimated_savings"] == entry["count"] * (len(entry["original_ids"]) - 1)
        src = entry["original_ids"]
        torch.testing.assert_close(emb[entry["id"]], emb_before[src].mean(dim=0))
        torch.testing.assert_close(head[entry["id"]], head_before[src].mean(dim=0))


def test_saved_tokenizer_loads_with_plain_transformers_and_encodes_with_the_phrases(tiny_model_dir, tmp_path):
    tokenizer = load_prepared_tokenizer(tiny_model_dir)
    texts = _texts("demo_text.csv", tokenizer)
    apply_ngrams(tokenizer, None, texts, DEMO_CONFIG, tmp_path, log=lambda s: None)
    tokenizer.save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    for text in texts:
        assert reloaded.encode(text, add_special_tokens=False) == tokenizer.encode(text, add_special_tokens=False)
        assert reloaded.decode(reloaded.encode(text, add_special_tokens=False)) == text


def test_a_phrase_that_is_a_whole_word_does_not_match_inside_a_longer_word(tokenizer, tmp_path):
    texts = ["print(value)\n"] * 10 + ["reprint(value)\n"]
    result = mine(tokenizer, texts, NgramOptions(min_count=2, min_chars=3), log=lambda s: None)
    before = tokenizer.encode("reprint(x)", add_special_tokens=False)
    apply_ngrams(tokenizer, None, texts, SimpleNamespace(ngrams=NgramOptions(min_count=2, min_chars=3)), tmp_path,
                 log=lambda s: None)
    assert any(p.text.startswith("print") for p in result.phrases)
    assert tokenizer.encode("reprint(x)", add_special_tokens=False) == before


def test_cli_prints_the_compression_of_the_demo_text(tiny_model_dir, capsys):
    from matelix.cli import main

    assert main(["ngrams", "mine", str(demo_data_path("demo_text.csv")), "--model", str(tiny_model_dir),
                 "--min-count", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["saved_pct"] >= 15 and data["tokens"]
    assert main(["ngrams", "mine", str(demo_data_path("demo_text.csv")), "--model", str(tiny_model_dir),
                 "--top-k", "5", "--screen-tokens", "0"]) == 0
    out = capsys.readouterr().out
    assert "tokens ->" in out and "5 added phrases" in out and "left out" not in out
    assert main(["ngrams", "mine", str(demo_data_path("demo_text.csv")), "--model", str(tiny_model_dir),
                 "--top-k", "5"]) == 0  # checked with the model: what it leaves out is said, with each change
    out = capsys.readouterr().out
    added = int(re.search(r"(\d+) added phrases", out).group(1))
    left = re.search(r"(\d+) more phrases left out", out)
    assert added + (int(left.group(1)) if left else 0) == 5
    assert re.search(r" -\d+\.\d\d  '", out)  # a kept phrase's loss change in nats (negative)


def test_cli_rejects_a_missing_model_folder_a_bad_dataset_and_bad_thresholds(tiny_model_dir, tmp_path, capsys):
    from matelix.cli import main

    demo = str(demo_data_path("demo_text.csv"))
    assert main(["ngrams", "mine", demo, "--model", str(tmp_path / "nope")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["ngrams", "mine", str(tmp_path / "missing.csv"), "--model", str(tiny_model_dir)]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert main(["ngrams", "mine", demo, "--model", str(tiny_model_dir), "--min-count", "1"]) == 2
    assert "min_count: Input should be greater than or equal to 2" in capsys.readouterr().err


def test_empty_corpus_adds_nothing(tokenizer, tmp_path):
    totals = apply_ngrams(tokenizer, None, [], SimpleNamespace(ngrams=NgramOptions()), tmp_path, log=lambda s: None)
    assert totals["added_tokens"] == 0 and totals["tokens_before"] == totals["tokens_after"] == 0
    assert np.isclose(totals["saved_pct"], 0)


@pytest.mark.slow
@pytest.mark.parametrize(("train_mode", "merge"), [("full", True), ("lora", True), ("lora", False)])
def test_a_run_with_ngrams_trains_the_new_rows_and_saves_a_model_transformers_can_use(
        home, tiny_model_dir, tmp_path, train_mode, merge):
    import shutil

    from matelix.training.foreground import run_foreground

    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    shutil.copy(demo_data_path("demo_text.csv"), home / "datasets" / "code.csv")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model_dir": "models/tiny", "csv_path": "datasets/code.csv", "train_mode": train_mode, "max_steps": 3,
        "chunk_size": 128, "gradient_accumulation_steps": 1, "per_device_train_batch_size": 2,
        "learning_rate": 1e-2, "save_steps": 1000, "preview_steps": 0, "use_ngrams": True,
        "ngram_min_count": 2, "merge_lora_on_save": merge}))
    assert run_foreground(config, home) == 0
    (run,) = list((home / "training_outputs").iterdir())
    token_map = json.loads((run / MAP_FILE).read_text(encoding="utf-8"))
    assert token_map["totals"]["added_tokens"] > 0
    assert "n-grams: added" in (run / "training.log").read_text(encoding="utf-8")
    status = json.loads((run / "status.json").read_text(encoding="utf-8"))
    assert status["ngrams"] == token_map["totals"]

    tokenizer = AutoTokenizer.from_pretrained(run)
    if merge:
        model = AutoModelForCausalLM.from_pretrained(run)
    else:  # an adapter over the original base: peft's loader resizes the base to the tokenizer first
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(run).merge_and_unload()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    vocab_before = token_map["totals"]["vocab_before"]
    assert len(tokenizer) == token_map["totals"]["vocab_after"] == model.get_input_embeddings().weight.shape[0]
    text = _texts("demo_text.csv", tokenizer)[4]
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert any(i >= vocab_before for i in ids) and tokenizer.decode(ids) == text
    # at least one new row moved away from its mean initialisation: the new rows were trained and saved
    emb, base_emb = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    moved = [not torch.allclose(emb[e["id"]], base_emb[e["original_ids"]].mean(dim=0), atol=1e-6)
             for e in token_map["tokens"]]
    assert any(moved)
    prompt = tokenizer("import numpy as np\n", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(out[0]), str)


def _metaspace_tokenizer():
    """A SentencePiece-style tokenizer (`▁` for spaces, byte fallback) with the MaTeLiX role tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from matelix.data.template import setup_tokenizer
    from matelix.demo.model import demo_texts

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"),
                                     decoders.ByteFallback(), decoders.Fuse()])
    tok.train_from_iterator(demo_texts(), trainer=trainers.BpeTrainer(
        vocab_size=1024, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
        initial_alphabet=[f"<0x{i:02X}>" for i in range(256)]))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                 clean_up_tokenization_spaces=False)
    setup_tokenizer(hf, "chat")
    return hf


def test_sentencepiece_style_tokenizer_keeps_every_text_exact(tmp_path):
    tokenizer = _metaspace_tokenizer()
    texts = _texts("demo_chat.csv", tokenizer)
    assert all(tokenizer.decode(tokenizer.encode(t, add_special_tokens=False)) == t for t in texts)
    totals = apply_ngrams(tokenizer, None, texts, DEMO_CONFIG, tmp_path, log=lambda s: None)
    assert totals["added_tokens"] > 0 and totals["saved_pct"] > 10
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_streaming_detokenizer_yields_the_text_token_by_token(tokenizer, tmp_path):
    from matelix.inference.detokenize import IncrementalDetokenizer

    texts = _texts("demo_chat.csv", tokenizer)
    apply_ngrams(tokenizer, None, texts, DEMO_CONFIG, tmp_path, log=lambda s: None)
    for text in texts[:20]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        stream = IncrementalDetokenizer(tokenizer, skip_special_tokens=False)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == text


def test_phrases_never_contain_or_fuse_with_role_and_special_token_text(tokenizer):
    from matelix.training.ngrams import _ReservedText

    reserved = _ReservedText(tokenizer)
    assert reserved.touched_by("x\n<|Benutzer|>\n")
    assert reserved.touched_by("Antwort\n<|")  # would swallow the start of a following role token
    assert reserved.touched_by("tin|>\nHallo")
    assert reserved.touched_by("ende</")
    assert not reserved.touched_by(" = np.asarray(")


def test_a_tokenizer_without_a_fast_backend_is_left_alone(tmp_path):
    class SlowTokenizer:
        backend_tokenizer = None

        def __len__(self) -> int:
            return 10

    lines: list[str] = []
    totals = apply_ngrams(SlowTokenizer(), None, ["text"] * 10, SimpleNamespace(ngrams=NgramOptions()), tmp_path, log=lines.append)
    assert totals["added_tokens"] == 0 and "skipped" in totals and not list(tmp_path.iterdir())
    assert "fast" in lines[0]


def test_cli_defaults_propose_exactly_what_a_run_with_default_options_adds(tiny_model_dir, tmp_path, capsys):
    from matelix.cli import main
    from matelix.training.config import TrainConfig

    path = demo_data_path("demo_chat.csv")
    assert main(["ngrams", "mine", str(path), "--model", str(tiny_model_dir), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["totals"]
    proposed = cli["added_tokens"]
    from matelix.training.dataprep import mining_texts
    from matelix.training.modelsetup import grow_vocabulary

    tokenizer = load_prepared_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # as the worker loads and grows it
    grow_vocabulary(model, tokenizer)
    texts = mining_texts(load_dataset(path).samples)  # what the worker mines (its split: the whole file here)
    config = TrainConfig(model_dir="models/m", csv_path="datasets/demo_chat.csv", use_ngrams=True)
    totals = apply_ngrams(tokenizer, model, texts, config, tmp_path, log=lambda s: None)
    assert totals["added_tokens"] == proposed > 0
    assert totals["left_out_by_model_check"] == cli["left_out_by_model_check"]


PROBES = ["What is the capital of France?", "How many legs does a spider have?", "What is 2 + 2?",
          "Who wrote Romeo and Juliet?", "What is a learning rate?", "Who are you?"]


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("dataset, kept_phrase", [("persona", "Mati"), ("demo_chat.csv", None)])
def test_phrases_added_to_a_pretrained_model_change_no_greedy_answer_and_keep_the_held_out_loss(
        real_model_dir, dataset, kept_phrase):
    """Before any training step, adding the phrases a run adds (mined from the training split, checked with
    the model) to SmolLM2 does no harm: the base model's greedy answers to a fixed probe set are the same
    text, and the held-out loss per character of the answers rises < 2%. The persona demo (English) and the
    German demo_chat threads, where every mined phrase unchecked raised it by 11%."""
    from matelix.data import tokenize_samples
    from matelix.data.tokenize import split_by_group
    from matelix.demo import PERSONA_DATASET
    from matelix.training.dataprep import mining_texts
    from matelix.training.ngrams import add_phrases

    samples = load_dataset(demo_data_path(PERSONA_DATASET if dataset == "persona" else dataset)).samples
    train, held = split_by_group(samples, 0.1, 42)
    tokenizer = AutoTokenizer.from_pretrained(real_model_dir)
    model = AutoModelForCausalLM.from_pretrained(real_model_dir).eval()

    def greedy() -> list[str]:
        return greedy_chat_answers(model, tokenizer, PROBES, max_new_tokens=20)

    def loss_per_char() -> float:
        """Summed loss of the held-out answers over their characters (token counts differ before/after)."""
        nll = chars = 0.0
        for sample, example in zip(held, tokenize_samples(held, tokenizer, template_mode="auto").examples,
                                   strict=True):
            labels = torch.tensor([example["labels"]])
            with torch.no_grad():
                loss = model(input_ids=torch.tensor([example["input_ids"]]), labels=labels).loss
            nll += float(loss) * int((labels[0, 1:] != -100).sum())
            chars += sum(len(m["content"]) for m in sample.messages if m["role"] == "assistant")
        return nll / chars

    before_answers, before_loss = greedy(), loss_per_char()
    result = mine(tokenizer, mining_texts(train), NgramOptions(), model=model)  # checked as a run checks them
    assert result.phrases
    assert kept_phrase is None or any(kept_phrase in p.text for p in result.phrases)
    add_phrases(tokenizer, model, result.phrases)
    assert greedy() == before_answers
    assert loss_per_char() < 1.02 * before_loss


def test_mining_ignores_padding_and_truncation_left_on_the_tokenizer_by_an_earlier_call(tiny_model_dir):
    texts = _texts("demo_chat.csv", load_prepared_tokenizer(tiny_model_dir))
    fresh = mine(load_prepared_tokenizer(tiny_model_dir), texts, NgramOptions(min_count=2), log=lambda s: None)
    used = load_prepared_tokenizer(tiny_model_dir)
    used(["a b", "a b c d e f g h"], padding=True, truncation=True, max_length=4)  # left on its backend
    assert used.backend_tokenizer.truncation is not None
    again = mine(used, texts, NgramOptions(min_count=2), log=lambda s: None)
    assert [p.text for p in again.phrases] == [p.text for p in fresh.phrases] != []
