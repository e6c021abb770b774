"""LoRA serving: decode speed of an adapter kept unmerged (peft layers active) vs merged into the base on load.

    .venv/bin/python bench/lora_serving.py [--threads 1] [--new-tokens 64]

Builds the ~20M-parameter bench Llama and a rank-16 LoRA adapter on every linear layer (random non-zero
weights), then runs the lab's engine over (a) the unmerged peft model and (b) `merge_and_unload()`, with 1 and
16 concurrent greedy requests. Prints tokens/s, the merged/unmerged ratio, and a JSON line. The registry
merges on load because of this comparison (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BENCH_SPEC = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6, "num_attention_heads": 8,
              "num_key_value_heads": 8}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def engine_tokens_per_s(model, prompt: list[int], clients: int, new_tokens: int) -> float:
    from matelix.inference.engine import Engine
    from matelix.inference.sampling import SamplingParams

    engine = Engine(model, context_length=2048, stop_token_ids=set())
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    try:
        engine.submit(prompt, SamplingParams(max_new_tokens=4, temperature=0.0)).wait()  # warm-up
        start = time.perf_counter()
        handles = [engine.submit(prompt, params) for _ in range(clients)]
        tokens = sum(len(h.wait().token_ids) for h in handles)
        return tokens / (time.perf_counter() - start)
    finally:
        engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from matelix.demo.model import TinyLlamaSpec, create_demo_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="matelix-lora-bench-") as tmp:
        base_dir = create_demo_model(Path(tmp) / "base", spec=TinyLlamaSpec(**BENCH_SPEC))
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS, init_lora_weights=False,
                          task_type="CAUSAL_LM")
        unmerged = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), lora).eval()
        unmerged.save_pretrained(Path(tmp) / "adapter")
        prompt = list(range(10, 40))
        results = {}
        for clients in (1, 16):
            results[f"unmerged_{clients}"] = engine_tokens_per_s(unmerged.get_base_model(), prompt, clients,
                                                                 args.new_tokens)
        merged = unmerged.merge_and_unload().eval()
        for clients in (1, 16):
            results[f"merged_{clients}"] = engine_tokens_per_s(merged, prompt, clients, args.new_tokens)
    print("clients | unmerged tok/s | merged tok/s | merged/unmerged")
    for clients in (1, 16):
        u, m = results[f"unmerged_{clients}"], results[f"merged_{clients}"]
        print(f"{clients:7d} | {u:14.1f} | {m:12.1f} | {m / u:14.2f}x")
    print(json.dumps({"bench": "lora_serving", "new_tokens": args.new_tokens, "lora_rank": 16, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
