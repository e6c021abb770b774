"""Multi-LoRA serving: 8 adapters on one resident base vs the same traffic on one merged model.

    .venv/bin/python bench/multi_lora.py [--threads 1] [--new-tokens 32] [--real]

Builds the ~20M-parameter bench Llama (or, with `--real`, uses models/smollm2-135m-instruct) and 8 rank-8 LoRA
adapters on every linear layer (random non-zero weights, saved as finished training runs), then through the
lab's registry and engine prints:

* resident memory: the base's weights with 8 adapters attached vs base + 8 x adapter size + 20%, and the
  process RSS growth of attaching them (each merged copy would be a whole model);
* aggregate tokens/s of 16 concurrent greedy clients spread over the 8 adapters (2 each) vs 16 clients on one
  merged model (adapter 0 merged into the base), run twice alternately (load drift hits both);
* time to first token for a request naming a not-yet-loaded adapter, and for `run@latest` right after the run
  writes a new checkpoint, next to a warm adapter's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

BENCH_SPEC = {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 6, "num_attention_heads": 8,
              "num_key_value_heads": 8}
REAL_MODEL = Path(__file__).resolve().parent.parent / "models" / "smollm2-135m-instruct"
ADAPTERS = 8
CLIENTS = 16
PROMPT = [{"role": "user", "content": "Write a short note about the weather in Berlin."}]


def save_adapter(out: Path, base_dir: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from matelix.training.modelsetup import detect_lora_targets

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=detect_lora_targets(model), init_lora_weights=False,
                      task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    with torch.no_grad():  # a trained adapter's size: small deltas, not peft's random init scale
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(0.05)
    peft_model.peft_config["default"].base_model_name_or_path = "models/base"
    peft_model.save_pretrained(out)


def write_run(home: Path, name: str, base_dir: Path, seed: int, state: str = "completed") -> Path:
    run = home / "training_outputs" / name
    save_adapter(run, base_dir, seed)
    (run / "status.json").write_text(json.dumps({"state": state}), encoding="utf-8")
    return run


def add_checkpoint(run: Path, base_dir: Path, step: int, seed: int) -> None:
    ckpt = run / f"checkpoint-{step}"
    save_adapter(ckpt, base_dir, seed)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")


async def first_token_s(registry, ref: str, ids: list[int]) -> float:
    """Seconds from naming `ref` to its first generated token (loading it when needed)."""
    from matelix.inference.sampling import SamplingParams

    start = time.perf_counter()
    loaded = await registry.acquire(ref, prefer_resident=False)
    handle = registry.admission.submit(loaded, [ids], SamplingParams(max_new_tokens=2, temperature=0))[0]
    async for event in handle:
        if event.token_ids:
            seconds = time.perf_counter() - start
            handle.cancel()
            return seconds
    return float("nan")


def throughput(models: list, ids: list[int], new_tokens: int) -> float:
    """Aggregate generated tokens/s of CLIENTS greedy requests spread over `models` (engines or lanes)."""
    from matelix.inference.sampling import SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, temperature=0, ignore_eos=True)
    start = time.perf_counter()
    handles = [models[i % len(models)].engine.submit(ids, params) for i in range(CLIENTS)]
    tokens = sum(len(h.wait().token_ids) for h in handles)
    return tokens / (time.perf_counter() - start)


async def scenario(home: Path, base_dir: Path, new_tokens: int) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from matelix.inference.engine import Engine
    from matelix.inference.registry import ModelRegistry
    from matelix.settings import Settings

    process = psutil.Process()
    settings = Settings(home=home, offline=True, max_loaded_adapters=ADAPTERS + 2, prefix_cache_mb=0)
    registry = ModelRegistry(settings)
    base = await registry.acquire("models/base")
    ids = base.render_chat(PROMPT)
    base_bytes = base.memory_bytes()
    throughput([base], ids, 4)  # warm-up
    rss_base = process.memory_info().rss
    adapters = [await registry.acquire(f"run_{i}", prefer_resident=False) for i in range(ADAPTERS)]
    assert all(a.served_as == "adapter" for a in adapters), [a.served_as for a in adapters]
    adapter_file_bytes = sum(a.memory_bytes() for a in adapters)
    throughput(adapters, ids, 4)  # warm-up
    rss_adapters = process.memory_info().rss
    with_adapters = base.memory_bytes()

    merged_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                             str(home / "training_outputs" / "run_0")).merge_and_unload().eval()

    class Merged:
        engine = Engine(merged_model, context_length=base.context_length, stop_token_ids=set(),
                        max_batch_size=settings.max_concurrent_generations)

    throughput([Merged], ids, 4)  # warm-up
    multi, merged = [], []
    for _ in range(2):
        multi.append(throughput(adapters, ids, new_tokens))
        merged.append(throughput([Merged], ids, new_tokens))
    Merged.engine.close()

    warm_ttft = await first_token_s(registry, "run_1", ids)
    cold_ttft = await first_token_s(registry, f"run_{ADAPTERS}", ids)  # never loaded before
    live = home / "training_outputs" / "live_run"
    first_latest = await first_token_s(registry, "live_run@latest", ids)
    add_checkpoint(live, base_dir, 20, seed=99)  # the worker writes a new checkpoint
    latest_ttft = await first_token_s(registry, "live_run@latest", ids)
    resolved = registry.resolve("live_run@latest").id
    await registry.close()
    return {"base_bytes": base_bytes, "adapter_bytes": adapter_file_bytes, "resident_bytes": with_adapters,
            "budget_bytes": int((base_bytes + adapter_file_bytes) * 1.2), "merged_copies_bytes": base_bytes * ADAPTERS,
            "rss_growth_bytes": rss_adapters - rss_base,
            "multi_tok_s": multi, "merged_tok_s": merged,
            "ratio": sum(multi) / sum(merged), "warm_ttft_s": warm_ttft, "cold_ttft_s": cold_ttft,
            "first_latest_ttft_s": first_latest, "new_checkpoint_ttft_s": latest_ttft, "latest_resolved": resolved}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="SmolLM2-135M-Instruct from models/ as the base")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from matelix.demo.model import TinyLlamaSpec, create_demo_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="matelix-multi-lora-") as tmp:
        home = Path(tmp)
        for sub in ("datasets", "training_outputs", "models"):
            (home / sub).mkdir()
        base_dir = home / "models" / "base"
        if args.real:
            if not (REAL_MODEL / "config.json").is_file():
                print(f"{REAL_MODEL} is missing (make serve converts it)", file=sys.stderr)
                return 2
            shutil.copytree(REAL_MODEL, base_dir)
        else:
            create_demo_model(base_dir, spec=TinyLlamaSpec(**BENCH_SPEC))
        for i in range(ADAPTERS + 1):
            write_run(home, f"run_{i}", base_dir, seed=i)
        live = home / "training_outputs" / "live_run"
        live.mkdir()
        (live / "status.json").write_text(json.dumps({"state": "running"}), encoding="utf-8")
        add_checkpoint(live, base_dir, 10, seed=50)
        r = asyncio.run(scenario(home, base_dir, args.new_tokens))
    mib = 2**20
    print(f"model: {'SmolLM2-135M-Instruct' if args.real else '~20M bench Llama'}, {ADAPTERS} adapters r=8 on "
          f"every linear layer, {CLIENTS} clients, {args.new_tokens} new tokens, threads {torch.get_num_threads()}")
    print(f"resident weights: {r['resident_bytes'] / mib:.1f} MiB with {ADAPTERS} adapters; budget base + "
          f"{ADAPTERS} x adapter + 20% = {r['budget_bytes'] / mib:.1f} MiB "
          f"({r['resident_bytes'] / r['budget_bytes']:.2f} of it); {ADAPTERS} merged copies would be "
          f"{r['merged_copies_bytes'] / mib:.1f} MiB; process RSS grew {r['rss_growth_bytes'] / mib:.1f} MiB")
    print("round | 8 adapters tok/s | one merged model tok/s")
    for i, (m, g) in enumerate(zip(r["multi_tok_s"], r["merged_tok_s"], strict=True)):
        print(f"{i + 1:5d} | {m:16.1f} | {g:22.1f}")
    print(f"aggregate ratio, 8 adapters / merged: {r['ratio']:.2f}x (goal >= 0.7x)")
    print(f"time to first token: warm adapter {r['warm_ttft_s']:.3f} s, cold adapter {r['cold_ttft_s']:.3f} s, "
          f"run@latest first {r['first_latest_ttft_s']:.3f} s, right after a new checkpoint "
          f"{r['new_checkpoint_ttft_s']:.3f} s (now {r['latest_resolved']})")
    print(json.dumps({"bench": "multi_lora", "real": args.real, "new_tokens": args.new_tokens, **r}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
