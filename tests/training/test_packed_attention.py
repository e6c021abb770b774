"""Packed rows attend per example: the same outputs and gradients as transformers' block-diagonal SDPA mask."""

from __future__ import annotations

import tempfile

import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig, TrainingArguments

from matelix.data.packing import PackedCollator
from matelix.training.packed_attention import NAME, example_spans, use_packed_attention
from matelix.training.trainer import LabTrainer


def _packed(vocab: int):
    """Two packed rows: three examples (5, 7, 4 tokens) and two examples plus filler (9, 3, filler 4)."""
    g = torch.Generator().manual_seed(0)
    rows = []
    for lengths in ((5, 7, 4), (9, 3)):
        ids = torch.randint(5, vocab, (sum(lengths),), generator=g).tolist()
        positions = [p for n in lengths for p in range(n)]
        labels = [(-100 if p == 0 else t) for t, p in zip(ids, positions, strict=True)]
        rows.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return PackedCollator(0)(rows)


def _models(tiny_model_dir):
    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert ref.config._attn_implementation == "sdpa"
    assert use_packed_attention(ours) and ours.config._attn_implementation == NAME
    return ref, ours


def test_example_spans_start_where_positions_restart():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5], [0, 0, 1, 0, 1, 2]])
    assert example_spans(positions) == (((0, 3), (3, 5), (5, 6)), ((0, 6),), ((0, 1), (1, 3), (3, 6)))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_per_example_attention_equals_the_block_mask_forward_and_backward(tiny_model_dir, checkpointing):
    ref, ours = _models(tiny_model_dir)
    if checkpointing:  # a recomputed layer must attend as its forward did
        for model in (ref, ours):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.train()
    batch = _packed(ref.config.vocab_size)
    a = ref(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    b = ours(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
             example_spans=example_spans(batch["position_ids"])).logits
    assert torch.allclose(a, b, atol=1e-5)
    # not trivially equal: attending across the examples of a row gives other logits
    crossed = ref(input_ids=batch["input_ids"], position_ids=torch.arange(16).expand(2, 16), use_cache=False).logits
    assert not torch.allclose(a[:, 5:], crossed[:, 5:], atol=1e-3)
    weights = torch.randn_like(a)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    for (name, p), q in zip(ref.named_parameters(), ours.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-4), name


def test_calls_without_spans_are_transformers_sdpa_bitwise(tiny_model_dir):
    ref, ours = _models(tiny_model_dir)
    ids = torch.randint(5, ref.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        assert torch.equal(ref(input_ids=ids, attention_mask=mask).logits,
                           ours(input_ids=ids, attention_mask=mask).logits)
        prompt = ids[:1, :6]
        assert torch.equal(ref.generate(prompt, max_new_tokens=5, do_sample=False),
                           ours.generate(prompt, max_new_tokens=5, do_sample=False))


def test_other_attention_implementations_and_sliding_windows_are_left_alone(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="eager")
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == "eager"
    config = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    windowed = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    assert not use_packed_attention(windowed) and windowed.config._attn_implementation == "sdpa"


def test_lab_trainer_attends_per_example_in_packed_batches(tiny_model_dir):
    ref, ours = _models(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    batch = _packed(model.config.vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, report_to="none", use_cpu=True, remove_unused_columns=False)
        trainer = LabTrainer(model=model, args=args)
        assert trainer.packed_attention and model.config._attn_implementation == NAME
        seen = []
        forward = model.model.layers[0].self_attn.forward

        def spy(*a, **kw):
            seen.append(kw.get("example_spans"))
            return forward(*a, **kw)

        model.model.layers[0].self_attn.forward = spy
        loss = trainer.compute_loss(model, dict(batch))
    assert seen == [example_spans(batch["position_ids"])]
    labels = batch["labels"]
    expected = torch.nn.functional.cross_entropy(
        ref(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[:, :-1]
        .flatten(0, 1),
        labels[:, 1:].flatten())
    assert torch.allclose(loss, expected, atol=1e-5)
