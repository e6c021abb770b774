"""The lean decode step gives bitwise the logits of the model's own forward, and is used only where it can."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from matelix.inference.decode_step import decode_step_for
from matelix.inference.kv_cache import new_cache


def _small(kind: str, **extra):
    """A random 2-layer model of `kind` (llama / qwen2 / mistral) with grouped KV heads."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **extra)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config).eval()


def _both_ways(model, lengths: list[int], steps: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Prefill left-padded prompts of `lengths` through the model, then decode `steps` tokens once through the
    model's forward and once through the lean step, each on its own cache; the logits of every step."""
    step = decode_step_for(model)
    assert step is not None
    width = max(lengths)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 250, (len(lengths), width), generator=gen)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    caches = [new_cache(model.config), new_cache(model.config)]
    results = []
    with torch.inference_mode():
        for cache in caches:
            model(input_ids=ids, attention_mask=mask, position_ids=position, cache=cache, use_cache=True)
        masks = [mask, mask]
        next_pos = torch.tensor(lengths)[:, None]
        for s in range(steps):
            token = torch.randint(3, 250, (len(lengths), 1), generator=gen)
            masks = [F.pad(m, (0, 1), value=1) for m in masks]
            own = model(input_ids=token, attention_mask=masks[0], position_ids=next_pos + s, cache=caches[0],
                        use_cache=True, logits_to_keep=1).logits[:, -1, :]
            lean = step(token, masks[1], next_pos + s, caches[1])
            results.append((own, lean))
    return results


@pytest.mark.parametrize("lengths", [[9], [9, 4, 7]], ids=["one row", "padded rows"])
def test_lean_step_equals_the_models_forward_on_the_demo_model(tiny_lm, lengths):
    _, model = tiny_lm
    for own, lean in _both_ways(model, lengths):
        assert lean.shape == own.shape
        assert torch.equal(own, lean)


@pytest.mark.parametrize("kind,extra", [("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": None})])
@pytest.mark.parametrize("lengths", [[6], [6, 2, 5]], ids=["one row", "padded rows"])
def test_lean_step_equals_the_models_forward_with_grouped_kv_heads(kind, extra, lengths):
    model = _small(kind, **extra)
    results = _both_ways(model, lengths)
    assert not torch.equal(results[0][0], results[1][0])  # the steps really moved on
    for own, lean in results:
        assert torch.equal(own, lean)


@pytest.mark.parametrize("mode", ["fp16", "int8"])
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_lean_step_equals_the_models_forward_with_quantized_weights(tiny_lm, kind, mode):
    from matelix.inference.quantize import FusedProjections, quantize_for_serving

    model = quantize_for_serving(_small("qwen2") if kind == "qwen2" else copy.deepcopy(tiny_lm[1]), mode)
    fused = [m for m in model.modules() if isinstance(m, FusedProjections)]
    # Llama's bias-free q/k/v and gate/up share one matrix each per layer; Qwen2's q/k/v carry biases
    assert len(fused) == model.config.num_hidden_layers * (1 if kind == "qwen2" else 2)
    for own, lean in _both_ways(model, [9, 4, 7]):
        assert torch.equal(own, lean)
    assert all(m._input is None for m in fused)  # nothing kept after a forward


def test_models_the_lean_step_does_not_know_keep_their_own_forward():
    assert decode_step_for(_small("mistral", sliding_window=64)) is None  # sliding window: transformers' masks
    assert decode_step_for(_small("qwen2", use_sliding_window=True, sliding_window=64, max_window_layers=0)) is None
    eager = _small("llama")
    eager.config._attn_implementation = "eager"
    assert decode_step_for(eager) is None
    assert decode_step_for(torch.nn.Linear(2, 2)) is None  # not a causal LM class it knows


def test_the_engine_decodes_through_the_lean_step_and_still_matches_generate(tiny_lm, make_engine):
    from matelix.inference.sampling import SamplingParams

    tokenizer, model = tiny_lm
    engine = make_engine()
    assert engine._decode is not None
    engine._compiled = None  # fp32 on the CPU would decode through `compiled_decode` first
    calls = []
    lean = engine._decode
    engine._decode = lambda *a: calls.append(a[0].shape) or lean(*a)
    prompt = tokenizer("Hallo Welt, wie geht es", add_special_tokens=False)["input_ids"]
    handle = engine.submit(prompt, SamplingParams(max_new_tokens=12, temperature=0.0))
    ids = [t for event in handle for t in event.token_ids]
    with torch.inference_mode():
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                  pad_token_id=tokenizer.pad_token_id)[0, len(prompt):].tolist()
    assert ids == expected[:len(ids)] and len(ids) >= 1
    assert len(calls) == len(ids) - 1  # every token after the first (sampled from the prefill) came from it
