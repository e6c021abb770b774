"""Weight quantization for serving (int8, fp16): what it replaces, that it stays close to fp32, how the registry loads,
keeps and reloads a model by its quantization, and what it refuses."""

from __future__ import annotations

import asyncio
import copy
import shutil

import pytest
import torch

from matelix.catalog import ModelRefused
from matelix.inference.quantize import check_quantization, packed_weight_bytes, quantize_for_serving
from matelix.inference.registry import ModelRegistry
from matelix.inference.sampling import SamplingParams


@pytest.fixture
def int8_model(tiny_lm):
    return quantize_for_serving(copy.deepcopy(tiny_lm[1]), "int8")


def test_int8_replaces_every_linear_layer_with_a_byte_per_weight(tiny_lm, int8_model):
    fp32 = tiny_lm[1]
    assert not any(isinstance(m, torch.nn.Linear) for m in int8_model.modules())
    linears = [m for m in fp32.modules() if isinstance(m, torch.nn.Linear)]
    weights = sum(m.weight.numel() for m in linears)
    assert packed_weight_bytes(int8_model) == weights + 4 * sum(m.out_features for m in linears)  # int8 + fp32 scales
    assert packed_weight_bytes(fp32) == 0
    assert quantize_for_serving(fp32, "none") is fp32


def test_fp16_replaces_every_linear_layer_with_two_bytes_per_weight_and_keeps_fp32_activations(tiny_lm):
    fp32 = tiny_lm[1]
    fp16 = quantize_for_serving(copy.deepcopy(fp32), "fp16")
    assert not any(isinstance(m, torch.nn.Linear) for m in fp16.modules())
    linears = [m for m in fp32.modules() if isinstance(m, torch.nn.Linear)]
    assert packed_weight_bytes(fp16) == 2 * sum(m.weight.numel() for m in linears)
    ids = torch.tensor([tiny_lm[0]("Ein neuronales Netz lernt aus Beispielen.")["input_ids"]])
    with torch.inference_mode():
        ref = fp32(input_ids=ids).logits
        got = fp16(input_ids=ids).logits
    assert got.dtype == torch.float32
    # Only the weights are rounded to fp16 (11 significant bits): the logits stay within fp16's rounding.
    assert (got - ref).abs().max() < 1e-2 * ref.abs().max()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize("mode", ["fp16", "int8"])
def test_projections_of_one_input_share_a_matrix_with_the_same_logits(tiny_lm, mode):
    from matelix.inference.quantize import LAYERS

    fused = quantize_for_serving(copy.deepcopy(tiny_lm[1]), mode)
    separate = copy.deepcopy(tiny_lm[1])
    for module in list(separate.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, LAYERS[mode](child))
    attn, mlp = fused.model.layers[0].self_attn, fused.model.layers[0].mlp
    assert attn.q_proj.fused is attn.k_proj.fused is attn.v_proj.fused is not None
    assert mlp.gate_proj.fused is mlp.up_proj.fused is not None and isinstance(mlp.down_proj, LAYERS[mode])
    ids = torch.tensor([tiny_lm[0](text)["input_ids"][:6] for text in ("Ein neuronales Netz lernt aus Beispielen.",
                                                                        "Der Fuchs liest ein ganzes Buch.")])
    with torch.inference_mode():
        # One product over the stacked weights against three: equal up to fp32 rounding (bitwise on an AVX2 CPU;
        # with AVX-512 the kernels split a matrix's columns by its width, which regroups some sums)
        close(fused(input_ids=ids).logits, separate(input_ids=ids).logits)  # prefill, two rows
        x = torch.randn(3, 1, attn.q_proj.in_features)
        q = attn.q_proj(x)
        x2 = torch.randn_like(x)  # another input before k and v were read: computed anew, never mixed up
        close(attn.k_proj(x2), separate.model.layers[0].self_attn.k_proj(x2))
        close(q, separate.model.layers[0].self_attn.q_proj(x))
        assert torch.equal(attn.q_proj(x), q)  # asked again for the same input: one more product, same values


def close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to fp32 rounding of the sums (a projection mixed up with another would differ by far more)."""
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))


def test_int8_logits_stay_close_to_fp32(tiny_lm, int8_model):
    ids = torch.tensor([tiny_lm[0]("Ein neuronales Netz lernt aus Beispielen.")["input_ids"]])
    with torch.inference_mode():
        ref = tiny_lm[1](input_ids=ids).logits
        got = int8_model(input_ids=ids).logits
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9


@pytest.mark.parametrize("mode", ["int8", "fp16"])
def test_engine_on_a_quantized_model_matches_its_generate_solo_and_batched(tiny_lm, mode):
    from matelix.inference.engine import Engine

    int8_model = quantize_for_serving(copy.deepcopy(tiny_lm[1]), mode)
    tokenizer = tiny_lm[0]
    ids = tokenizer("Hallo, wie geht es dir?")["input_ids"]
    with torch.inference_mode():
        expected = int8_model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=None)[0, len(ids):].tolist()
    other = tokenizer("Der Himmel ist heute")["input_ids"]
    engine = Engine(int8_model, context_length=2048, stop_token_ids=set())
    try:
        result = engine.submit(ids, SamplingParams(max_new_tokens=12, temperature=0)).wait()
        batched = [engine.submit(p, SamplingParams(max_new_tokens=12, temperature=0)) for p in (other, ids, other)]
        batched = [h.wait() for h in batched]
    finally:
        engine.close()
    assert list(result.token_ids) == expected
    assert list(batched[1].token_ids) == expected  # in a batch with other rows: the same tokens
    assert list(batched[0].token_ids) == list(batched[2].token_ids)


@pytest.mark.parametrize(("mode", "device", "message"), [("int4", None, "must be one of"),
                                                          ("int8", "cuda", "CPU only"), ("int8", "mps", "CPU only"),
                                                          ("fp16", "cuda", "CPU only")])
def test_unknown_modes_and_quantization_off_the_cpu_are_refused(mode, device, message):
    with pytest.raises(ModelRefused, match=message) as info:
        check_quantization(mode, device)
    assert info.value.param == "quantization"
    check_quantization("int8", "cpu")
    check_quantization("none", "cuda")


def test_registry_loads_keeps_and_reloads_by_quantization(home, make_settings, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")

    async def scenario():
        registry = ModelRegistry(make_settings(offline=True))
        fp32 = await registry.acquire("models/tiny-demo")
        assert fp32.quantization == "none" and fp32.info()["quantization"] == "none"
        fp32_bytes = fp32.memory_bytes()
        int8 = await registry.acquire("models/tiny-demo", quantization="int8")  # replaces the fp32 copy
        assert int8 is not fp32 and int8.info()["quantization"] == "int8"
        assert [m["quantization"] for m in registry.status()["loaded"]] == ["int8"]
        assert int8.memory_bytes() < fp32_bytes
        assert await registry.acquire("models/tiny-demo") is int8  # no preference: the resident copy
        int8_bytes = int8.memory_bytes()
        fp16 = await registry.acquire("models/tiny-demo", quantization="fp16")
        assert int8_bytes < fp16.memory_bytes() < fp32_bytes  # fbgemm's packed weights counted too
        int8 = await registry.acquire("models/tiny-demo", quantization="int8")
        assert await registry.acquire("models/tiny-demo", quantization="int8") is int8
        handles = registry.admission.submit(int8, [int8.encode("Hallo")], SamplingParams(max_new_tokens=3,
                                                                                         temperature=0))
        assert (await handles[0].result()).finish_reason in ("stop", "length")
        await registry.close()

    asyncio.run(scenario())


def test_the_setting_is_the_default_on_the_cpu(home, make_settings, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")

    async def scenario():
        registry = ModelRegistry(make_settings(offline=True, quantization="int8"))
        loaded = await registry.acquire("models/tiny-demo", "cpu")
        assert loaded.quantization == "int8"
        await registry.close()

    asyncio.run(scenario())
