"""The training worker: one run folder in, a trained model in the same folder out.

    python -m matelix.training.worker RUN_DIR [--resume CHECKPOINT]
    torchrun --standalone --nproc-per-node N -m matelix.training.worker RUN_DIR   (multi-process)
    torchrun --nnodes M --node-rank K --master-addr H --master-port P ... -m matelix.training.worker RUN_DIR

Global rank 0 (on node 0) saves checkpoints and the final model, and answers the live preview and the
probes; the first process of every node keeps that node's own run folder (status, log, metrics).

It reads `RUN_DIR/train_config.json`, writes status/metrics/preview files as it goes, and ends in state
`completed`, `stopped` (a stop was requested: it finished the optimizer step, saved a checkpoint and the
model) or `failed` (with the error and the last log lines). Everything it prints goes to `training.log`.
SIGTERM and SIGINT request the same graceful stop as the `stop_requested` file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from matelix.training.rundir import ERROR_TAIL_LINES, RunDir, checkpoint_step, process_start_time

WARNINGS_LOG = "warnings.log"


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _keeps_folder() -> bool:
    """The first process of this node writes the node's run folder (on node 0 the same as `_is_main`)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def _attach_log(rundir: RunDir) -> None:
    """Point stdout/stderr at training.log (append) unless the spawner already did."""
    fd = os.open(rundir.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    target = os.fstat(fd)
    for std in (1, 2):
        try:
            current = os.fstat(std)
            same = (current.st_ino, current.st_dev) == (target.st_ino, target.st_dev)
        except OSError:
            same = False
        if not same:
            os.dup2(fd, std)
    os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)


def make_log(is_main: bool):
    def log(message: str) -> None:
        if is_main:
            try:
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} | {message}", flush=True)
            except OSError:
                pass  # a full disk: the failure it causes elsewhere is recorded in status.json instead

    return log


def _launcher_pid() -> int:
    # Under torchrun the process the server watches is the launcher, our parent.
    return os.getppid() if "TORCHELASTIC_RUN_ID" in os.environ else os.getpid()


def _preview_prompt_ids(tokenizer, config, render_mode: str) -> list[int]:
    if render_mode == "column":
        return tokenizer.encode(config.preview_prompt, add_special_tokens=False)
    text = tokenizer.apply_chat_template([{"role": "user", "content": config.preview_prompt}],
                                         tokenize=False, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


def training_arguments(config, placement, output_dir: Path, *, evaluate: bool):
    """The Trainer settings of a run (shared with bench/train_throughput.py)."""
    from transformers import TrainingArguments

    from matelix.training.sharding import sharding_arguments

    return TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs, max_steps=config.max_steps or -1,
        # transformers 5 takes the warm-up as `warmup_steps` only (`warmup_ratio` is gone): a value below 1 is
        # that fraction of the training steps, so the ratio goes in as it is.
        lr_scheduler_type=config.lr_scheduler, warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm, seed=config.seed, logging_steps=config.logging_steps,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate else "no", eval_steps=config.eval_steps or config.save_steps,
        bf16=placement.precision == "bf16", fp16=placement.precision == "fp16",
        use_cpu=placement.device == "cpu", report_to="none", disable_tqdm=True,
        # Packed rows carry position_ids the model needs; the default would drop them as "unused".
        remove_unused_columns=False, include_num_input_tokens_seen="non_padding",
        train_sampling_strategy="sequential", dataloader_num_workers=0,
        ddp_backend=("gloo" if placement.device == "cpu" else "nccl") if config.world_size > 1 else None,
        ddp_find_unused_parameters=False if config.world_size > 1 else None,
        # A node that stops answering fails the run after this long instead of 30 minutes (the default).
        ddp_timeout=config.node_timeout_s,
        **sharding_arguments(config, output_dir),
    )


def divert_library_warnings(rundir: RunDir) -> None:
    """Library warnings (a transformers FutureWarning, a deprecation notice) speak to developers, not to the
    person watching the run: they go to `warnings.log` beside `training.log` instead of into it."""
    import warnings

    path = rundir.path / WARNINGS_LOG

    def to_file(message, category, filename, lineno, file=None, line=None) -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = to_file


def divert_transformers_logging(rundir: RunDir) -> None:
    """transformers' own warnings (its logger, not the warnings module) go to `warnings.log` as well."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.add_handler(logging.FileHandler(rundir.path / WARNINGS_LOG, encoding="utf-8"))


def train(rundir: RunDir, resume: Path | None, stop, log) -> str:
    """Run the whole job; returns the final state (`completed` or `stopped`)."""
    from transformers import PrinterCallback, set_seed
    from transformers.utils import logging as hf_logging

    from matelix.settings import Settings
    from matelix.training import dataprep, modelsetup
    from matelix.training.callbacks import LivePreviewCallback, RecordingCollator, StatusCallback
    from matelix.training.preflight import resolve_run
    from matelix.training.trainer import CPU_TOKENS_PER_PASS, LabTrainer

    hf_logging.disable_progress_bar()  # redrawn bars are noise in a log file
    divert_transformers_logging(rundir)
    is_main, keeps = _is_main(), _keeps_folder()
    config = rundir.read_config()
    sharded = config.distributed != "ddp"
    settings = Settings(home=rundir.path.resolve().parent.parent)
    resolved = resolve_run(config, settings, check=False)
    resume = resume or resolved.resume_checkpoint
    placement = modelsetup.resolve_placement(config)
    if placement.device != "cuda":
        # DeepSpeed (installed for checking generated ZeRO configs) is imported by the Trainer when present and
        # would otherwise warn in every CPU run's log that it found no GPU; naming the device keeps it quiet
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    log(f"Run {rundir.run_id}: {config.train_mode} fine-tune of {config.model_dir} on {config.csv_path}; "
        f"device {placement.device}, precision {placement.precision}, {describe_processes(config)}")
    log("Config: " + config.model_dump_json(exclude_defaults=True))
    set_seed(config.seed)

    split = dataprep.load_samples(config, resolved.dataset_path, log)
    render_mode = split.loaded.render_mode
    tokenizer = modelsetup.load_tokenizer(resume or resolved.model_source,
                                          trust_remote_code=settings.trust_remote_code)
    added = modelsetup.prepare_tokenizer(tokenizer, config, render_mode)
    template = modelsetup.template_choice(tokenizer)
    log(f"Chat template: {template}" + (f"; added tokens: {', '.join(added)}" if added else "; no tokens added"))
    if keeps:
        rundir.update_status(chat_template=template)
    model = modelsetup.load_model(resolved.model_source, placement, config,
                                  trust_remote_code=settings.trust_remote_code)
    grew = modelsetup.grow_vocabulary(model, tokenizer)
    if grew:
        log(f"Embeddings resized to {len(tokenizer)} rows (new rows = mean of the old ones)")
    if config.use_ngrams and resume is None:
        from matelix.training.ngrams import apply_ngrams

        if keeps:
            rundir.update_status(phase="mining n-grams")
        texts = dataprep.mining_texts(split.train, train_on_prompt=config.train_on_prompt)
        totals = apply_ngrams(tokenizer, model, texts,
                              config, rundir.path, log)
        if keeps:
            rundir.update_status(ngrams=totals)
    examples = dataprep.build_examples(split, tokenizer, config, log)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.train_mode == "lora":
        base_vocab = len(modelsetup.load_tokenizer(resolved.model_source,
                                                   trust_remote_code=settings.trust_remote_code))
        model = modelsetup.apply_lora(model, config, new_token_ids=list(range(base_vocab, len(tokenizer))),
                                      log=log)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"Model: {n_params:,} parameters")

    evaluate = bool(examples.eval)
    args = training_arguments(config, placement, rundir.path, evaluate=evaluate)
    from matelix.training import evaluation

    eval_cb = None if sharded else evaluation.setup(
        config, settings, rundir, split.eval, tokenizer, render_mode, has_eval_loss=evaluate,
        resume_step=checkpoint_step(resume) if resume else None, is_main=is_main, log=log)
    if sharded:
        # Generating on one process would wait for the others' shards forever: no probes, no live preview.
        log(f"{config.distributed}: the weights are sharded, so probes and the live preview are off "
            "(the held-out loss is still measured)")
    recorder = RecordingCollator(examples.collator)
    status_cb = StatusCallback(rundir, stop, is_main=keeps, started_at=time.time(), log=log)
    callbacks = [status_cb, *evaluation.best_model_settings(args, config), *([eval_cb] if eval_cb else [])]
    if is_main and not sharded:
        callbacks.append(LivePreviewCallback(rundir, tokenizer, recorder,
                                             prompt_ids=_preview_prompt_ids(tokenizer, config, render_mode),
                                             every=config.preview_steps,
                                             max_new_tokens=config.preview_max_new_tokens, log=log))
    trainer = LabTrainer(model=model, args=args, train_dataset=examples.train,
                      eval_dataset=examples.eval if evaluate else None, data_collator=recorder,
                      processing_class=tokenizer, callbacks=callbacks)
    trainer.tokens_per_pass = config.tokens_per_pass or (CPU_TOKENS_PER_PASS if placement.device == "cpu" else None)
    trainer.release_heap_between_passes = placement.device == "cpu" and config.gradient_checkpointing
    trainer.remove_callback(PrinterCallback)  # StatusCallback logs a formatted line per logging step
    if resume is not None and keeps:
        rundir.truncate_metrics(checkpoint_step(resume))
        log(f"Resuming from {resume.name} (step {checkpoint_step(resume)})")
    if stop.requested():
        log("Stop requested before training began")
        return "stopped"
    evaluation.evaluate_base(trainer, eval_cb)
    if keeps:
        rundir.update_status(phase="training", train_examples=examples.stats.get("examples"),
                             train_rows=len(examples.train))
    if is_main and config.world_size == 1 and resume is None:
        from matelix.training.trainer import measure_micro_step, planned_steps

        step_s = measure_micro_step(trainer) * config.gradient_accumulation_steps
        total = planned_steps(len(examples.train), config)
        log(f"Warm-up step: {step_s:.1f} s per optimizer step -> about {step_s * total / 60:.1f} min "
            f"for {total} steps")
        rundir.update_status(eta_seconds=step_s * total, total_steps=total, warmup_step_seconds=step_s)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    state = "stopped" if status_cb.stopped else "completed"
    if sharded:
        log(f"{config.distributed}: trained as {type(trainer.model_wrapped).__name__}")
    log(f"Training {'stopped' if state == 'stopped' else 'finished'} at step {trainer.state.global_step}: "
        f"mean loss {result.training_loss:.4f}")
    if state == "completed":
        evaluation.evaluate_final(trainer, eval_cb, rundir, log, is_main=is_main)
    # Sharded weights are gathered by every process together; rank 0 then writes them.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if sharded else None
    if is_main:
        rundir.update_status(phase="saving", step=trainer.state.global_step, train_loss=result.training_loss)
        model = trainer.accelerator.unwrap_model(trainer.model) if sharded else trainer.model
        form = modelsetup.save_final_model(model, tokenizer, rundir.path, config,
                                           resolved.model_source, log, state_dict=state_dict)
        rundir.update_status(saved_form=form)
    trainer.accelerator.wait_for_everyone()
    return state


def describe_processes(config) -> str:
    """`processes 2` or `2 nodes x 2 processes (this is node 1)`, with the strategy when it shards."""
    text = (f"{config.nnodes} nodes x {config.nproc} processes (this is node {config.node_rank})"
            if config.nnodes > 1 else f"processes {config.nproc}")
    return text + (f", {config.distributed}" if config.distributed != "ddp" else "")


# How a peer's loss surfaces from torch.distributed when it is not a DistError: gloo's transport raises a
# RuntimeError naming its source file (".../gloo/transport/tcp/pair.cc: Read error ...: Connection reset by
# peer"), or the store says the connection was closed.
PEER_LOST = ("gloo", "connection closed by peer", "connection reset by peer")


def failure_message(exc: BaseException) -> str:
    """The error of a failed run; a broken connection between processes is named as such (a lost node)."""
    import torch.distributed as dist

    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, dist.DistError) or any(sign in text.lower() for sign in PEER_LOST):
        return f"another process or node of the run was lost ({text})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m matelix.training.worker",
                                     description="Run the training job described by RUN_DIR/train_config.json")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", type=Path, help="checkpoint folder to continue from")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rundir = RunDir(args.run_dir)
    keeps = _keeps_folder()
    _attach_log(rundir)
    divert_library_warnings(rundir)
    log = make_log(keeps)

    from matelix.training.callbacks import StopSignal

    stop = StopSignal(rundir)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if keeps:
        status = rundir.read_status()
        pid = status.get("pid") or _launcher_pid()
        rundir.update_status(state="starting", phase="loading", pid=pid,
                             pid_started=status.get("pid_started") or process_start_time(pid),
                             session_started_at=time.time(), finished_at=None, error=None)
    try:
        state = train(rundir, args.resume, stop, log)
    except Exception as exc:
        log("Training failed:\n" + traceback.format_exc())
        if keeps:
            rundir.update_status(state="failed", phase=None, finished_at=time.time(),
                                 error={"message": failure_message(exc),
                                        "last_lines": rundir.tail_log(ERROR_TAIL_LINES)})
        return 1
    if keeps:
        rundir.update_status(state=state, phase=None, finished_at=time.time(), eta_seconds=0)
        rundir.clear_stop()
        log(f"Run {state}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
