"""The compiled decode step (fp32 and int8 weights): the lean step's logits to fp32 rounding, rows independent of
their batch, used by the engine only where it applies."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from matelix.inference.compiled_decode import compiled_decode_step_for
from matelix.inference.decode_step import decode_step_for
from matelix.inference.kv_cache import new_cache
from matelix.inference.quantize import quantize_for_serving


def _small(kind: str = "llama", **extra):
    """A random 2-layer model with grouped KV heads (4 query heads over 2)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **extra)
    config._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(config).eval()


def _decode(model, step, lengths: list[int], steps: int = 5, seed: int = 1) -> list[torch.Tensor]:
    """Prefill left-padded random prompts of `lengths` through the model's forward, then decode `steps` random
    tokens through `step` on the same cache; the logits of every step."""
    width = max(lengths)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 250, (len(lengths), width), generator=gen)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = 1
    cache = new_cache(model.config)
    results = []
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), cache=cache,
              use_cache=True)
        position = torch.tensor(lengths)[:, None]
        for s in range(steps):
            token = torch.randint(3, 250, (len(lengths), 1), generator=gen)
            mask = F.pad(mask, (0, 1), value=1)
            results.append(step(token, mask, position + s, cache))
    return results


@pytest.mark.parametrize("lengths", [[9], [9, 4, 7]], ids=["one row", "padded rows"])
@pytest.mark.parametrize("which", ["demo", "grouped"])
@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_compiled_step_gives_the_lean_steps_logits_to_fp32_rounding(tiny_lm, kind, which, lengths):
    model = copy.deepcopy(tiny_lm[1]) if which == "demo" else _small()
    model = quantize_for_serving(model, "int8" if kind == "int8" else "none")
    fast = compiled_decode_step_for(model)
    assert fast is not None and fast.kind == kind
    lean = _decode(model, decode_step_for(model), lengths)
    got = _decode(model, fast, lengths)
    assert not torch.equal(lean[0], lean[-1])  # the steps really moved on
    for ref, mine in zip(lean, got, strict=True):
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        assert torch.equal(mine.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_a_row_of_a_batch_equals_the_same_row_alone(tiny_lm, kind):
    model = quantize_for_serving(copy.deepcopy(tiny_lm[1]), "int8" if kind == "int8" else "none")
    fast = compiled_decode_step_for(model)
    gen = torch.Generator().manual_seed(3)
    prompt, others = torch.randint(3, 250, (1, 7), generator=gen), torch.randint(3, 250, (2, 11), generator=gen)
    with torch.inference_mode():
        alone, rest = new_cache(model.config), new_cache(model.config)
        model(input_ids=prompt, cache=alone, use_cache=True)
        model(input_ids=others, cache=rest, use_cache=True)
        batch = new_cache(model.config)  # the engine's merge: the short row left-padded under the others
        for mine, theirs, merged in zip(alone.layers, rest.layers, batch.layers, strict=True):
            merged.update(torch.cat([theirs.keys, F.pad(mine.keys, (0, 0, 4, 0))]),
                          torch.cat([theirs.values, F.pad(mine.values, (0, 0, 4, 0))]))
        mask_alone, mask = torch.ones((1, 7), dtype=torch.long), torch.ones((3, 11), dtype=torch.long)
        mask[2, :4] = 0
        positions = torch.tensor([[11], [11], [7]])
        for s in range(5):
            token = torch.randint(3, 250, (1, 1), generator=gen)
            mask_alone, mask = F.pad(mask_alone, (0, 1), value=1), F.pad(mask, (0, 1), value=1)
            solo = fast(token, mask_alone, positions[2:] + s, alone)
            rows = fast(torch.cat([torch.tensor([[5], [6]]), token]), mask, positions + s, batch)
            assert torch.equal(rows[2], solo[0])
            assert not torch.equal(rows[1], solo[0])


def test_models_the_compiled_step_does_not_run_get_none(tiny_lm):
    assert compiled_decode_step_for(quantize_for_serving(copy.deepcopy(tiny_lm[1]), "fp16")) is None
    assert compiled_decode_step_for(copy.deepcopy(tiny_lm[1]).to(torch.bfloat16)) is None
    mixed = copy.deepcopy(tiny_lm[1])
    mixed.model.norm.weight.data = mixed.model.norm.weight.data.to(torch.bfloat16)  # a norm the loops cannot read
    assert compiled_decode_step_for(mixed) is None
    for mode in ("none", "int8"):
        assert compiled_decode_step_for(quantize_for_serving(_small("qwen2"), mode)) is None  # q/k/v biases
        assert compiled_decode_step_for(quantize_for_serving(_small(hidden_act="gelu"), mode)) is None
        sliding = _small("mistral", sliding_window=64)
        assert compiled_decode_step_for(quantize_for_serving(sliding, mode)) is None  # the lean step's limits too


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_the_engine_decodes_through_it_for_few_rows_without_adapters(tiny_lm, kind):
    from matelix.inference.engine import Engine
    from matelix.inference.sampling import SamplingParams

    tokenizer = tiny_lm[0]
    model = quantize_for_serving(copy.deepcopy(tiny_lm[1]), "int8" if kind == "int8" else "none")
    engine = Engine(model, context_length=2048, stop_token_ids=set())
    try:
        assert engine._compiled.kind == kind and engine._compiled.rows >= 8
        calls = {"compiled": [], "lean": []}
        compiled, lean_step = engine._compiled, engine._decode

        def counted(*args):
            calls["compiled"].append(args[0].shape[0])
            return compiled(*args)

        counted.rows = compiled.rows
        engine._compiled = counted
        engine._decode = lambda *a: calls["lean"].append(a[0].shape[0]) or lean_step(*a)
        prompts = [tokenizer(t)["input_ids"] for t in ("Hallo, wie geht es dir?", "Der Himmel ist heute")]
        engine.submit(prompts[0], SamplingParams(max_new_tokens=6, temperature=0)).wait()
        assert len(calls["compiled"]) == 5 and not calls["lean"]  # every token after the prefill's first
        counted.rows = 1
        handles = [engine.submit(p, SamplingParams(max_new_tokens=6, temperature=0)) for p in prompts]
        for h in handles:
            h.wait()
        assert calls["lean"] and max(calls["lean"]) == 2  # two rows: more than the limit, the lean step
    finally:
        engine.close()
