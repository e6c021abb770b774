"""LoRA on the real SmolLM2-135M-Instruct: the lab's training path vs a plain HF Trainer + peft, in one run.

    python bench/real_model.py [--steps 3] [--batch-size 4] [--chunk-size 512] [--checkpointing both|on|off]

Both sides train the same conversations of `datasets/demo_chat.csv` (rendered with the model's own ChatML
template by the lab's data library, assistant-only labels) with the same hyperparameters (LoRA r 8 on all
seven projections, fp32, AdamW, lr 2e-4):
  * lab: packed rows (PackedCollator), `LabTrainer` (head + loss on trained positions only, in chunks;
    passes of at most 512 tokens, the worker's CPU default; with checkpointing the free heap is returned to the
    OS after each pass, as the worker does);
  * baseline: `Trainer` + `DataCollatorForSeq2Seq` (each batch padded to its longest sample), the model's
    own loss over full logits.
Each variant runs in a fresh child process (peak RSS = VmHWM of that process) for the examples that fill
`--steps` packed steps; the baseline trains the same examples in padded batches. Reported: all tokens/s
(padding included), real tokens/s, trained tokens/s, peak RSS, MFU (4·N·real tokens/s over the measured
fp32 matmul peak: LoRA's backward skips the frozen weights' gradients) and the held-out loss after
training (the same 16 held-out examples, one loss function for both). Then, in one more child process, the
lab's forward + backward over the same packed batches with each example of a row attending on its own
(`training/packed_attention.py`) and with transformers' one block mask per row, alternating
(`--attention-rounds`, 0 skips it), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")  # as the worker does off CUDA: no DeepSpeed detection warning

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import matmul_peak_gflops, peak_rss_mib  # noqa: E402

HELDOUT = 16


def examples_for(model_dir: Path, chunk_size: int):
    from transformers import AutoTokenizer

    from matelix.data import load_dataset, tokenize_samples
    from matelix.data.template import setup_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert setup_tokenizer(tokenizer) == []  # its own template: nothing added
    loaded = load_dataset(ROOT / "src/matelix/demo/data/demo_chat.csv")
    out = tokenize_samples(loaded.samples, tokenizer, template_mode="auto", chunk_size=chunk_size)
    return tokenizer, out.examples


class Counting:
    """Counts all tokens (padding included), real tokens and trained tokens of the batches it builds."""

    def __init__(self, collator, pad_id: int):
        self.collator, self.pad_id = collator, pad_id
        self.all = self.real = self.trained = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.all += batch["input_ids"].numel()
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else sum(len(f["input_ids"]) for f in features)
        self.trained += int((batch["labels"][:, 1:] != -100).sum())
        return batch


def lora_model(model_dir: str, checkpointing: bool):
    """The model both sides train: fp32, no KV cache, LoRA r 8 on all seven projections."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                            "gate_proj", "up_proj", "down_proj"]))


def child(variant: str, checkpointing: bool, model_dir: str, train: list, heldout: list, batch: int,
          pad_id: int, out) -> None:
    import torch
    from transformers import (
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from matelix.data.packing import PackedCollator, pack_examples
    from matelix.training.trainer import CPU_TOKENS_PER_PASS, LabTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = lora_model(model_dir, checkpointing)
    if variant == "lab":
        rows = pack_examples(train, max(len(e["input_ids"]) for e in train))
        collator = Counting(PackedCollator(pad_id), pad_id)
        trainer_cls = LabTrainer
    else:
        rows = train
        collator = Counting(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100), pad_id)
        trainer_cls = Trainer
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch, num_train_epochs=1,
                                 learning_rate=2e-4, lr_scheduler_type="constant", logging_steps=1000,
                                 save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
                                 remove_unused_columns=False, train_sampling_strategy="sequential",
                                 dataloader_num_workers=0)
        trainer = trainer_cls(model=model, args=args, train_dataset=rows, data_collator=collator)
        if variant == "lab":
            trainer.tokens_per_pass = CPU_TOKENS_PER_PASS  # the worker's CPU default
            trainer.release_heap_between_passes = checkpointing  # as the worker does on a CPU
        t = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t
    model.eval()
    losses = []
    plain = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    with torch.no_grad():
        for e in heldout:
            b = plain([e])
            losses.append(float(model(**b).loss))
    out.put({"variant": variant, "checkpointing": checkpointing, "seconds": seconds, "steps":
             trainer.state.global_step, "all_tokens": collator.all, "real_tokens": collator.real,
             "trained_tokens": collator.trained, "peak_rss_mib": peak_rss_mib(),
             "heldout_loss": sum(losses) / len(losses),
             "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
             "params": sum(p.numel() for p in model.parameters())})


def attention_ab(model_dir: str, train: list, batch: int, pad_id: int, rounds: int, out) -> None:
    """Packed rows attending per example (`training/packed_attention.py`) against transformers' block mask
    over the row: the lab's forward + backward (LoRA, no checkpointing, the worker's passes) over the same
    batches, the two ways alternating `rounds` times in this one process; tokens/s medians."""
    from transformers import TrainingArguments

    from matelix.data.packing import PackedCollator, pack_examples
    from matelix.training.trainer import CPU_TOKENS_PER_PASS, LabTrainer

    model = lora_model(model_dir, checkpointing=False)
    rows = pack_examples(train, max(len(e["input_ids"]) for e in train))
    collate = PackedCollator(pad_id)
    batches = [collate(rows[i:i + batch]) for i in range(0, len(rows), batch)]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, report_to="none", use_cpu=True, remove_unused_columns=False)
        trainer = LabTrainer(model=model, args=args)
    trainer.tokens_per_pass = CPU_TOKENS_PER_PASS
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    seconds = {"per_example": [], "block_mask": []}
    model.train()
    for way in seconds:  # warm-up, untimed: the first pass pays one-time costs (allocations, kernel choice)
        trainer.packed_attention = way == "per_example"
        trainer.compute_loss(model, trainer.passes(batches[0])[0]).backward()
    for _ in range(rounds):
        for way in seconds:
            trainer.packed_attention = way == "per_example"
            t = time.perf_counter()
            for b in batches:
                for part in trainer.passes(b):
                    trainer.compute_loss(model, part).backward()
            seconds[way].append(time.perf_counter() - t)
    out.put({way: tokens / sorted(s)[len(s) // 2] for way, s in seconds.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models/smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=3, help="packed optimizer steps of the lab side")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--checkpointing", choices=["both", "on", "off"], default="both")
    parser.add_argument("--attention-rounds", type=int, default=5, help="rounds of the per-example attention "
                        "A/B (0: skip it)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        print(f"{args.model} missing: run `make demo` (or matelix demo-assets) first", file=sys.stderr)
        return 2
    from matelix.data.packing import pack_examples

    tokenizer, examples = examples_for(args.model, args.chunk_size)
    heldout, pool = examples[-HELDOUT:], examples[:-HELDOUT]
    # the examples that fill `steps` packed rows of batch_size
    want = args.steps * args.batch_size
    n = len(pool)
    while n > 1 and len(pack_examples(pool[:n], args.chunk_size)) > want:
        n -= 1
    train = pool[:n]
    peak = matmul_peak_gflops()
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.checkpointing]
    ctx = mp.get_context("spawn")
    results = []
    for checkpointing in modes:
        for variant in ("lab", "baseline"):
            queue = ctx.Queue()
            proc = ctx.Process(target=child, args=(variant, checkpointing, str(args.model), train, heldout,
                                                   args.batch_size, tokenizer.pad_token_id, queue))
            proc.start()
            r = queue.get()
            proc.join()
            r["all_tps"] = r["all_tokens"] / r["seconds"]
            r["real_tps"] = r["real_tokens"] / r["seconds"]
            r["trained_tps"] = r["trained_tokens"] / r["seconds"]
            r["mfu"] = 4 * r["params"] * r["real_tps"] / (peak * 1e9)
            results.append(r)
            print(f"  {variant:8s} checkpointing {'on ' if checkpointing else 'off'}: {r['seconds']:.1f} s, "
                  f"{r['real_tps']:.1f} real tok/s, peak {r['peak_rss_mib']:.0f} MiB", flush=True)
    print(f"\n{len(train)} conversations, {sum(len(e['input_ids']) for e in train):,} tokens; held-out "
          f"{HELDOUT}; matmul peak {peak:.0f} GFLOP/s")
    print(f"{'variant':10s} {'ckpt':4s} {'steps':>5s} {'all tok/s':>9s} {'real tok/s':>10s} {'trained/s':>9s} "
          f"{'peak MiB':>8s} {'MFU':>6s} {'held-out':>8s} {'trainable':>10s}")
    for r in results:
        print(f"{r['variant']:10s} {'on' if r['checkpointing'] else 'off':4s} {r['steps']:5d} {r['all_tps']:9.1f} "
              f"{r['real_tps']:10.1f} {r['trained_tps']:9.1f} {r['peak_rss_mib']:8.0f} {100 * r['mfu']:5.1f}% "
              f"{r['heldout_loss']:8.4f} {r['trainable']:10,}")
    for checkpointing in modes:
        lab, base = (next(r for r in results if r["variant"] == v and r["checkpointing"] == checkpointing)
                     for v in ("lab", "baseline"))
        print(f"checkpointing {'on ' if checkpointing else 'off'}: lab/baseline real tokens/s "
              f"{lab['real_tps'] / base['real_tps']:.2f}x, peak RSS {lab['peak_rss_mib'] / base['peak_rss_mib']:.2f}x")
    attention = None
    if args.attention_rounds > 0:
        queue = ctx.Queue()
        proc = ctx.Process(target=attention_ab, args=(str(args.model), train, args.batch_size,
                                                      tokenizer.pad_token_id, args.attention_rounds, queue))
        proc.start()
        attention = queue.get()
        proc.join()
        print(f"packed rows, lab forward + backward, {args.attention_rounds} rounds alternating: attending per "
              f"example {attention['per_example']:.1f} tok/s, one block mask per row {attention['block_mask']:.1f} "
              f"tok/s ({attention['per_example'] / attention['block_mask']:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "results": results, "attention_ab": attention},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
