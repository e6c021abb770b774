"""How long a run will take on this machine, before it starts.

The run's own data pipeline (the same tokenizing, chunking and packing as the worker) gives the rows and
so the optimizer steps; a few real optimizer steps of the chosen model with the chosen settings, on rows
spread over the whole dataset, give the time per step. The first measured step is a warm-up and not counted.

    python -m matelix.training.estimate HOME < config.json     (prints one JSON object)

The server runs this as a child process, like the worker: training never runs inside the API process.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from matelix.settings import Settings
from matelix.training.config import TrainConfig

WARMUP_STEPS = 1
MEASURED_STEPS = 2
LONG_RUN_S = 30 * 60  # longer than this, the estimate suggests cheaper settings
LONG_SEQUENCE = 512


def optimizer_steps(rows: int, config: TrainConfig) -> int:
    """Optimizer steps of a run over `rows` training rows, as the Trainer counts them."""
    if config.max_steps:
        return config.max_steps
    batches = math.ceil(rows / (config.per_device_train_batch_size * config.nproc))
    per_epoch = max(1, math.ceil(batches / config.gradient_accumulation_steps))
    return math.ceil(per_epoch * config.num_train_epochs)


def spread(rows: list, count: int) -> list:
    """`count` rows taken evenly over the list (the dataset may be sorted by length), repeated if short."""
    if not rows:
        return []
    if count >= len(rows):
        return [rows[i % len(rows)] for i in range(count)]
    return [rows[(i * len(rows)) // count] for i in range(count)]


def suggestions(config: TrainConfig, seconds: float) -> list[dict]:
    """Cheaper settings worth trying when the run is long (codes the dashboard words in its language)."""
    if seconds < LONG_RUN_S:
        return []
    out = []
    if config.chunk_size > LONG_SEQUENCE:
        out.append({"code": "shorter_sequences", "chunk_size": max(LONG_SEQUENCE, config.chunk_size // 2)})
    if config.train_mode == "full":
        out.append({"code": "lora"})
    if not config.max_steps and config.num_train_epochs > 1:
        out.append({"code": "fewer_epochs", "num_train_epochs": 1})
    return out


def measure_step_seconds(model, tokenizer, examples, config: TrainConfig, placement) -> list[float]:
    """Seconds of each optimizer step of a short real training on rows spread over the dataset."""
    from transformers import Trainer, TrainerCallback

    from matelix.training.worker import training_arguments

    steps = WARMUP_STEPS + MEASURED_STEPS
    rows = spread(examples.train, steps * config.per_device_train_batch_size * config.gradient_accumulation_steps)
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.started)

    short = config.model_copy(update={"max_steps": steps, "save_steps": 10**9, "logging_steps": 10**9,
                                      "num_train_epochs": 1, "nproc": 1})
    with tempfile.TemporaryDirectory(prefix="matelix-estimate-") as out:
        args = training_arguments(short, placement, Path(out), evaluate=False)
        args.save_strategy = "no"
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=examples.collator,
                          callbacks=[StepTimer()])
        trainer.train()
    return times[WARMUP_STEPS:] or times


def estimate(config: TrainConfig, settings: Settings) -> dict:
    """Rows, tokens, optimizer steps, measured seconds per step and the expected duration of the run."""
    from matelix.training import dataprep, modelsetup
    from matelix.training.preflight import resolve_run

    quiet = lambda _line: None  # noqa: E731 — the pipeline's log lines are for the run's log, not here
    resolved = resolve_run(config, settings, check=False)
    placement = modelsetup.resolve_placement(config)
    split = dataprep.load_samples(config, resolved.dataset_path, quiet)
    tokenizer = modelsetup.load_tokenizer(resolved.model_source, trust_remote_code=settings.trust_remote_code)
    modelsetup.prepare_tokenizer(tokenizer, config, split.loaded.render_mode)
    loading = time.perf_counter()
    model = modelsetup.load_model(resolved.model_source, placement, config,
                                  trust_remote_code=settings.trust_remote_code)
    grew = modelsetup.grow_vocabulary(model, tokenizer)
    examples = dataprep.build_examples(split, tokenizer, config, quiet)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.train_mode == "lora":
        model = modelsetup.apply_lora(model, config, train_embeddings=grew, log=quiet)
    setup_seconds = time.perf_counter() - loading
    times = measure_step_seconds(model, tokenizer, examples, config, placement)
    per_step = statistics.median(times)
    steps = optimizer_steps(len(examples.train), config)
    seconds = steps * per_step + setup_seconds
    return {"rows": len(examples.train), "tokens": examples.stats.get("tokens"), "steps": steps,
            "seconds_per_step": round(per_step, 4), "measured_steps": len(times),
            "setup_seconds": round(setup_seconds, 2), "seconds": round(seconds, 1), "device": placement.device, "long": seconds >= LONG_RUN_S,
            "suggestions": suggestions(config, seconds)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = Settings(home=Path(argv[0])) if argv else Settings()
    config = TrainConfig.model_validate(json.loads(sys.stdin.read()))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the answer only
            result = estimate(config, settings)
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
