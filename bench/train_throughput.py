"""Training throughput: a matelix run (packing) vs a plain HF Trainer with its padding collator.

    python bench/train_throughput.py [--samples 320] [--chunk-size 512] [--batch-size 8]

Builds a ~20M-parameter Llama and a synthetic chat dataset with skewed lengths (many short answers, few
long ones), tokenizes it once with the lab's data library, then trains one epoch on the same examples at
the same batch size and sequence limit:
  * matelix: packed rows (PackedCollator), the worker's Trainer settings and the lab's callbacks
    (status/metrics files, live preview); once more without the callbacks to measure their overhead;
  * baseline: `Trainer` + `DataCollatorForSeq2Seq` (pads each batch to its longest sample).
Reports effective (non-padding) tokens/s and their ratio, padding waste, MFU (6·N·tokens/s over the
measured fp32 matmul peak), per-token loss of packed vs padded batches on the same weights, and peak RSS
of a LoRA vs a full fine-tune at batch size 1 (each in a fresh child process). Prints a table and JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

SHORT_WORDS = (8, 40)
LONG_WORDS = (250, 420)
LONG_FRACTION = 0.12
WORDS = ("der die das und ist ein eine nicht mit auf für Modell Daten Training lernen Netz Schicht Gewicht "
         "Beispiel Frage Antwort schnell langsam groß klein Zeit Text Token Satz Wort Rechner Speicher").split()


def spec():
    from matelix.demo.model import TinyLlamaSpec

    return TinyLlamaSpec(vocab_size=2048, hidden_size=512, intermediate_size=1376, num_hidden_layers=6,
                         num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048)


def synthetic_chat(path: Path, samples: int, seed: int) -> list[str]:
    """A threaded chat CSV: one question/answer per thread, answer lengths skewed (mostly short)."""
    import csv

    rng = random.Random(seed)
    texts = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "parent_id", "system", "Benutzer", "Kontext", "Assistentin"])
        for i in range(1, samples + 1):
            lo, hi = LONG_WORDS if rng.random() < LONG_FRACTION else SHORT_WORDS
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) + "."
            question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "?"
            writer.writerow([i, "", "Du bist hilfsbereit.", question, "", answer])
            texts += [question, answer]
    return texts


def matmul_peak_gflops(n: int = 2048, reps: int = 8) -> float:
    """fp32 GFLOP/s of the fastest of `reps` n×n matmuls: a peak, so a moment of other load does not lower it."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class CountingCollator:
    """Counts real (sample) tokens and all tokens (with padding) of every batch it builds."""

    def __init__(self, collator):
        self.collator = collator
        self.real = 0
        self.total = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.real += sum(len(f["input_ids"]) for f in features)
        self.total += batch["input_ids"].numel()
        return batch


CALLBACK_EVENTS = ("on_train_begin", "on_step_end", "on_log", "on_save", "on_evaluate")


def timed_callbacks(callbacks, spent: dict):
    """Wrap each callback event (and the preview's sample generation) to add up the seconds spent in them."""
    def wrap(obj, name, key):
        inner = getattr(obj, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
                spent[key + "_calls"] = spent.get(key + "_calls", 0) + 1

        setattr(obj, name, timed)

    for cb in callbacks:
        for name in CALLBACK_EVENTS:
            wrap(cb, name, "callbacks")
        if hasattr(cb, "_generate"):
            wrap(cb, "_generate", "generate")
    return callbacks


def train_once(model_dir, rows, collator, args, callbacks=()):
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    counting = CountingCollator(collator)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=counting,
                      callbacks=list(callbacks))
    trainer.remove_callback(PrinterCallback)
    t = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "real_tokens": counting.real, "total_tokens": counting.total,
            "tokens_per_second": counting.real / seconds, "padding_waste": 1 - counting.real / counting.total,
            "steps": trainer.state.global_step, "train_loss": result.training_loss, "model": model}


@torch.no_grad()
def loss_per_token(model, batches) -> float:
    """Sum of token losses / trained tokens over `batches` (no averaging per batch)."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1), ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((labels != -100).sum())
    return total / count


def peak_rss_mib() -> float:
    # VmHWM starts afresh with the new address space of a spawned child; ru_maxrss would carry over the
    # parent's peak across fork + exec.
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def memory_child(mode: str, model_dir: str, rows: list, batch: int, out) -> None:
    """Train a few packed steps in a fresh process; report RSS after loading and the peak, in MiB."""
    import psutil
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from matelix.data import PackedCollator
    from matelix.training.config import TrainConfig
    from matelix.training.modelsetup import apply_lora

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if mode == "lora":
        cfg = TrainConfig(model_dir="m", csv_path="d", train_mode="lora")
        model = apply_lora(model, cfg, train_embeddings=False, log=lambda m: None)
    loaded = psutil.Process().memory_info().rss / 2**20
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=4,
                             use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no",
                             remove_unused_columns=False, logging_strategy="no")
    Trainer(model=model, args=args, train_dataset=rows, data_collator=PackedCollator(0)).train()
    out.put({"mode": mode, "rss_loaded_mib": loaded,
             "rss_peak_mib": peak_rss_mib()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

    from matelix.data import PackedCollator, pack_examples
    from matelix.demo.model import create_demo_model
    from matelix.training import dataprep
    from matelix.training.callbacks import LivePreviewCallback, RecordingCollator, StatusCallback, StopSignal
    from matelix.training.config import TrainConfig
    from matelix.training.modelsetup import Placement
    from matelix.training.rundir import RunDir
    from matelix.training.worker import training_arguments

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    texts = synthetic_chat(work / "chat.csv", args.samples, seed=0)
    model_dir = create_demo_model(work / "model", seed=0, spec=spec(), texts=iter(texts))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = TrainConfig(model_dir="m", csv_path="d", chunk_size=args.chunk_size, num_train_epochs=1,
                         per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                         logging_steps=1, save_steps=10**6, preview_steps=25, learning_rate=4e-4)
    split = dataprep.load_samples(config, work / "chat.csv", log=lambda m: None)
    examples = dataprep.build_examples(split, tokenizer, config, log=lambda m: None)
    plain = dataprep.build_examples(split, tokenizer, config.model_copy(update={"packing": False}),
                                    log=lambda m: None).train
    lengths = sorted(len(e["input_ids"]) for e in plain)
    fresh = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    n_params = sum(p.numel() for p in fresh.parameters())
    peak = matmul_peak_gflops()
    placement = Placement("cpu", "fp32")

    rundir = RunDir(work / "run")
    rundir.path.mkdir()
    recorder = RecordingCollator(examples.collator)
    warm_args = training_arguments(config.model_copy(update={"max_steps": 2}), placement, work / "o0",
                                   evaluate=False)
    train_once(model_dir, examples.train, examples.collator, warm_args)  # first-use costs stay out of timings
    spent: dict = {}
    lab_callbacks = timed_callbacks([StatusCallback(rundir, StopSignal(rundir), is_main=True, started_at=time.time()),
                     LivePreviewCallback(rundir, tokenizer, recorder, prompt_ids=tokenizer.encode("Frage?"),
                                         every=config.preview_steps, max_new_tokens=16, log=print)], spent)
    lab = train_once(model_dir, examples.train, recorder, training_arguments(config, placement, work / "o1",
                                                                              evaluate=False), lab_callbacks)
    hf_args = training_arguments(config, placement, work / "o3", evaluate=False)
    hf_args.train_sampling_strategy = "random"
    hf_args.include_num_input_tokens_seen = "no"
    base = train_once(model_dir, plain, DataCollatorForSeq2Seq(tokenizer, padding=True), hf_args)

    # Same weights, same examples: packed batches and padded batches must give the same per-token loss.
    subset = plain[:64]
    padded = [DataCollatorForSeq2Seq(tokenizer, padding=True)(subset[i:i + 8]) for i in range(0, len(subset), 8)]
    packed_loss = loss_per_token(fresh, [PackedCollator(tokenizer.pad_token_id)([row])
                                         for row in pack_examples(subset, args.chunk_size)])
    padded_loss = loss_per_token(fresh, padded)
    heldout = padded
    lab_after, base_after = loss_per_token(lab["model"], heldout), loss_per_token(base["model"], heldout)

    ctx = mp.get_context("spawn")
    memory = {}
    for mode in ("full", "lora"):
        queue = ctx.Queue()
        proc = ctx.Process(target=memory_child, args=(mode, str(model_dir), examples.train[:16], 1, queue))
        proc.start()
        memory[mode] = queue.get()
        proc.join()

    def mfu(tps):
        return 6 * n_params * tps / (peak * 1e9)

    result = {
        "params": n_params, "samples": len(plain), "chunk_size": args.chunk_size, "batch_size": args.batch_size,
        "length_p50": lengths[len(lengths) // 2], "length_max": lengths[-1], "matmul_peak_gflops": peak,
        "matelix_tokens_per_second": lab["tokens_per_second"], "hf_tokens_per_second": base["tokens_per_second"],
        "speedup": lab["tokens_per_second"] / base["tokens_per_second"],
        "matelix_padding_waste": lab["padding_waste"], "hf_padding_waste": base["padding_waste"],
        "matelix_mfu": mfu(lab["tokens_per_second"]), "hf_mfu": mfu(base["tokens_per_second"]),
        "matelix_steps": lab["steps"], "hf_steps": base["steps"],
        "callback_seconds": spent.get("callbacks", 0.0), "preview_samples": spent.get("generate_calls", 0),
        "preview_sample_seconds": spent.get("generate", 0.0) / max(spent.get("generate_calls", 0), 1),
        "loss_per_token_packed": packed_loss, "loss_per_token_padded": padded_loss,
        "loss_after_epoch_matelix": lab_after, "loss_after_epoch_hf": base_after,
        "rss_full_peak_mib": memory["full"]["rss_peak_mib"], "rss_lora_peak_mib": memory["lora"]["rss_peak_mib"],
        "rss_full_above_load_mib": memory["full"]["rss_peak_mib"] - memory["full"]["rss_loaded_mib"],
        "rss_lora_above_load_mib": memory["lora"]["rss_peak_mib"] - memory["lora"]["rss_loaded_mib"],
        "device": "cpu", "threads": torch.get_num_threads(),
    }
    step_s = (lab["seconds"] - result["callback_seconds"]) / lab["steps"]
    per_step_s = (result["callback_seconds"] - spent.get("generate", 0.0)) / lab["steps"]
    result["step_seconds"] = step_s
    result["callback_seconds_per_step"] = per_step_s
    result["callback_overhead"] = (per_step_s + result["preview_sample_seconds"] / config.preview_steps) / step_s
    result["lora_vs_full_peak"] = result["rss_lora_peak_mib"] / result["rss_full_peak_mib"]
    result["lora_vs_full_above_load"] = result["rss_lora_above_load_mib"] / max(result["rss_full_above_load_mib"], 1)

    print(f"\n{n_params / 1e6:.1f}M-param Llama, {len(plain)} samples (p50 {result['length_p50']} tokens, "
          f"max {result['length_max']}), batch {args.batch_size}, chunk {args.chunk_size}, "
          f"matmul peak {peak:.0f} GFLOP/s")
    print(f"{'':28}{'matelix (packed)':>18}{'HF Trainer (padded)':>22}")
    print(f"{'effective tokens/s':28}{lab['tokens_per_second']:>18.0f}{base['tokens_per_second']:>22.0f}"
          f"   ratio {result['speedup']:.2f}x")
    print(f"{'padding waste':28}{lab['padding_waste']:>18.1%}{base['padding_waste']:>22.1%}")
    print(f"{'MFU (6·N·tok/s / peak)':28}{result['matelix_mfu']:>18.1%}{result['hf_mfu']:>22.1%}")
    print(f"{'optimizer steps (1 epoch)':28}{lab['steps']:>18}{base['steps']:>22}")
    print(f"{'loss/token, same weights':28}{packed_loss:>18.5f}{padded_loss:>22.5f}")
    print(f"{'loss/token after 1 epoch':28}{lab_after:>18.5f}{base_after:>22.5f}")
    print(f"lab callbacks: {per_step_s * 1000:.1f} ms per step (status, metrics, decoded batch) + "
          f"{result['preview_sample_seconds']:.2f} s per preview sample every {config.preview_steps} steps, "
          f"step {step_s:.2f} s -> overhead {result['callback_overhead']:.1%} of step time")
    print(f"peak RSS at batch 1: full {result['rss_full_peak_mib']:.0f} MiB, LoRA {result['rss_lora_peak_mib']:.0f} MiB "
          f"({result['lora_vs_full_peak']:.0%}); above the loaded model: full "
          f"{result['rss_full_above_load_mib']:.0f} MiB, LoRA {result['rss_lora_above_load_mib']:.0f} MiB "
          f"({result['lora_vs_full_above_load']:.0%})")
    print(json.dumps({"bench": "train_throughput", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
