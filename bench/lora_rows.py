"""Per-row LoRA: one decode step of 16 rows over 8 adapters, peft's mixed-adapter batches vs the lab's stacked form.

    .venv/bin/python bench/lora_rows.py [--threads 1] [--rounds 3]

Builds a ~27M-parameter Llama with 8 rank-8 LoRA adapters on every linear layer (random non-zero weights) and
times one decode step (16 rows, 32 cached tokens, 2 rows per adapter) of (a) the plain model, (b) peft with
`adapter_names` (a loop over the adapters in every LoRA layer) and (c) `inference/multi_lora.py` (every adapter's
matrices stacked per layer, each row masked to its own). Prints step times, each one's speed relative to the
plain model, and the largest logit difference between (b) and (c). The engine uses (c) because of this
comparison (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

ADAPTERS, ROWS, RANK = 8, 16, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    from matelix.inference.multi_lora import LoraSlots

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = LlamaConfig(vocab_size=8000, hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=1024)
    base = LlamaForCausalLM(config).eval()
    names = [f"a{i}" for i in range(ADAPTERS)]
    lora = LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(base), lora, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, lora)
    peft_model.eval()
    stacked, slots = copy.deepcopy(base), LoraSlots()
    for name in names:
        layers = {}
        for path, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_A") and name in module.lora_A:
                layers[path] = (module.lora_A[name].weight.data, module.lora_B[name].weight.data, module.scaling[name])
        slots.add(stacked, name, layers, RANK)
    rows = [names[i % ADAPTERS] for i in range(ROWS)]

    def step_s(model, extra, select: bool, steps: int = 16, cached: int = 32) -> float:
        ids = torch.randint(0, config.vocab_size, (ROWS, cached))
        cache = DynamicCache(config=config)
        with torch.inference_mode():
            if select:
                slots.select(rows)
            model(input_ids=ids, cache=cache, use_cache=True, **extra)
            token = torch.randint(0, config.vocab_size, (ROWS, 1))
            start = time.perf_counter()
            for _ in range(steps):
                model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1, **extra)
            return (time.perf_counter() - start) / steps

    results = {"plain": [], "peft": [], "stacked": []}
    for _ in range(args.rounds):  # alternated, so load drift hits all three
        results["plain"].append(step_s(base, {}, False))
        results["peft"].append(step_s(peft_model, {"adapter_names": rows}, False))
        results["stacked"].append(step_s(stacked, {}, True))
    ids = torch.randint(0, config.vocab_size, (ROWS, 8))
    with torch.inference_mode():
        slots.select(rows)
        diff = (peft_model(input_ids=ids, adapter_names=rows).logits - stacked(input_ids=ids).logits).abs().max()
    plain = sum(results["plain"])
    print(f"{ROWS} rows over {ADAPTERS} rank-{RANK} adapters, one decode step, threads {args.threads}")
    print("variant | ms per step (rounds) | speed vs plain")
    for variant, times in results.items():
        print(f"{variant:7s} | {', '.join(f'{t * 1e3:.1f}' for t in times):20s} | {plain / sum(times):.2f}x")
    print(f"largest logit difference, peft vs stacked: {float(diff):.1e}")
    print(json.dumps({"bench": "lora_rows", **{k: v for k, v in results.items()}, "max_diff": float(diff)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
