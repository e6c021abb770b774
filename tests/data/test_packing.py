"""Packing: rows of whole examples, and a packed batch gives each sample the same loss as running it alone."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from matelix.data import PackedCollator, PaddedCollator, Sample, pack_examples, tokenize_samples

SAMPLES = [
    Sample(messages=[{"role": "system", "content": "Sei nett."}, {"role": "user", "content": "Hallo"},
                     {"role": "assistant", "content": "Hallo! Wie kann ich helfen?"}], group="a", row=1),
    Sample(messages=[{"role": "user", "content": "Was ist ein neuronales Netz?"},
                     {"role": "assistant", "content": "Ein Modell aus vielen einfachen Recheneinheiten."}],
           group="b", row=2),
    Sample(messages=[{"role": "user", "content": "Danke"}, {"role": "assistant", "content": "Gern!"}],
           group="c", row=3),
    Sample(text="Der Marktplatz füllte sich langsam mit Ständen.", group="d", row=4),
]


def _example(n: int, trained_from: int = 1) -> dict:
    ids = list(range(10, 10 + n))
    return {"input_ids": ids, "labels": [-100] * trained_from + ids[trained_from:]}


def test_rows_hold_whole_examples_within_chunk_size():
    examples = [_example(n) for n in (6, 4, 5, 5, 3, 7)]
    rows = pack_examples(examples, 10)
    assert sorted(len(r["input_ids"]) for r in rows) == [10, 10, 10]
    assert sum(len(r["input_ids"]) for r in rows) == 30
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0]
        assert all(r["labels"][i] == -100 for i in starts)
        assert len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"])
    assert rows == pack_examples(examples, 10)  # deterministic


def test_an_example_longer_than_chunk_size_gets_its_own_row():
    rows = pack_examples([_example(12), _example(3)], 10)
    assert [len(r["input_ids"]) for r in rows] == [12, 3]


def test_padded_collator_masks_padding():
    batch = PaddedCollator(pad_token_id=0)([_example(3), _example(5)])
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]
    assert batch["labels"][0].tolist() == [-100, 11, 12, -100, -100]


def _per_sample_losses(logits: torch.Tensor, labels: torch.Tensor, bounds: list[tuple[int, int]]) -> list[float]:
    """Mean next-token loss of each `[start, end)` span of one row of logits (T, V) and labels (T,)."""
    out = []
    for s, e in bounds:
        lg, lb = logits[s:e - 1], labels[s + 1:e]
        out.append(torch.nn.functional.cross_entropy(lg, lb, ignore_index=-100).item())
    return out


def _alone_losses(model, examples) -> dict[tuple, float]:
    out = {}
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex["input_ids"]]), use_cache=False).logits[0]
            out[tuple(ex["input_ids"])] = _per_sample_losses(logits, torch.tensor(ex["labels"]),
                                                             [(0, len(ex["input_ids"]))])[0]
    return out


def test_packed_batch_gives_the_same_loss_per_sample_as_separate_runs(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    examples = tokenize_samples(SAMPLES, tok, template_mode="chat", chunk_size=256).examples
    alone = _alone_losses(model, examples)
    rows = pack_examples(examples, 256)
    assert len(rows) == 1
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    with torch.no_grad():
        out = model(**batch, use_cache=False)
    starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0] + [batch["input_ids"].shape[1]]
    bounds = list(zip(starts[:-1], starts[1:], strict=True))
    packed = _per_sample_losses(out.logits[0], batch["labels"][0], bounds)
    assert len(packed) == len(examples)
    for (s, e), loss in zip(bounds, packed, strict=True):
        assert loss == pytest.approx(alone[tuple(batch["input_ids"][0, s:e].tolist())], abs=1e-4)
    # and the model's own loss is the token-weighted mean of the per-sample losses
    counts = {tuple(ex["input_ids"]): sum(1 for lb in ex["labels"] if lb != -100) for ex in examples}
    weighted = sum(alone[k] * n for k, n in counts.items()) / sum(counts.values())
    assert out.loss.item() == pytest.approx(weighted, abs=1e-4)


def test_filler_in_a_shorter_row_changes_no_sample_loss(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    examples = tokenize_samples(SAMPLES, tok, template_mode="chat", chunk_size=256).examples
    alone = _alone_losses(model, examples)
    rows = [pack_examples(examples[:2], 256)[0], pack_examples(examples, 256)[0]]
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(rows)
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits
    short = len(rows[0]["input_ids"])
    assert batch["input_ids"].shape[1] > short  # row 0 carries filler
    starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()[:short]) if p == 0] + [short]
    bounds = list(zip(starts[:-1], starts[1:], strict=True))
    for (s, e), loss in zip(bounds, _per_sample_losses(logits[0], batch["labels"][0], bounds), strict=True):
        assert loss == pytest.approx(alone[tuple(batch["input_ids"][0, s:e].tolist())], abs=1e-4)


def test_without_restarting_positions_samples_would_see_each_other(tiny_model_dir):
    """Guards the test above: the same packed row with plain positions gives different losses."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    examples = tokenize_samples(SAMPLES, tok, template_mode="chat", chunk_size=256).examples
    batch = PackedCollator(pad_token_id=tok.pad_token_id)(pack_examples(examples, 256))
    with torch.no_grad():
        packed = model(**batch, use_cache=False).logits
        flat = model(input_ids=batch["input_ids"], use_cache=False).logits
    assert not torch.allclose(packed, flat, atol=1e-3)


def test_right_padded_rows_and_their_mask():
    from matelix.data.packing import right_padded

    ids, mask = right_padded([[5, 6, 7], [8]], pad_id=2)
    assert ids.tolist() == [[5, 6, 7], [8, 2, 2]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
