"""Trainer callbacks of the worker: status + metrics files, graceful stop, and the live preview.

All file writing happens on the main process only. The stop decision is shared across processes (one
all-reduce per optimizer step) so every rank leaves the loop at the same step.
"""

from __future__ import annotations

import threading
import time

import torch
from transformers import TrainerCallback

from matelix.training.rundir import RunDir

# status.json is rewritten at most this often between logging steps (readers poll it).
STATUS_INTERVAL_S = 0.5
# The decoded current batch is refreshed at most this often.
BATCH_PREVIEW_INTERVAL_S = 2.0
PREVIEW_MAX_TOKENS = 1024


class StopSignal:
    """Set by a signal handler or the stop file; read by the callback at each optimizer step."""

    def __init__(self, rundir: RunDir):
        self.rundir = rundir
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def requested(self) -> bool:
        if not self._event.is_set() and self.rundir.stop_requested():
            self._event.set()
        return self._event.is_set()


def _all_ranks_agree(flag: bool) -> bool:
    """True on every rank when any rank saw the flag (no-op outside distributed training)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


class StatusCallback(TrainerCallback):
    """Writes status.json and metrics.jsonl; turns a stop request into 'save a checkpoint, then end'."""

    def __init__(self, rundir: RunDir, stop: StopSignal, *, is_main: bool, started_at: float, log=None):
        self.rundir = rundir
        self.log = log or (lambda message: None)
        self.stop = stop
        self.is_main = is_main
        self.started_at = started_at
        self.stopped = False
        self._last_write = 0.0
        self._last_log: tuple[float, int] | None = None  # (time, tokens_seen) at the previous log
        self._session_start: tuple[float, int, int] | None = None  # (time, step, tokens) when training began
        self._latest: dict = {}

    def on_train_begin(self, args, state, control, **kwargs):
        now = time.time()
        self._session_start = (now, state.global_step, state.num_input_tokens_seen)
        self._last_log = (now, state.num_input_tokens_seen)
        if self.is_main:
            self.rundir.update_status(state="running", step=state.global_step, total_steps=state.max_steps,
                                      epoch=state.epoch or 0.0, tokens_seen=state.num_input_tokens_seen,
                                      training_started_at=now)

    def on_step_end(self, args, state, control, **kwargs):
        if _all_ranks_agree(self.stop.requested()) and not self.stopped:
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True
        if self.is_main and time.time() - self._last_write >= STATUS_INTERVAL_S:
            self._write_status(state)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.is_main or not logs or "train_loss" in logs:
            return
        now = time.time()
        tokens = state.num_input_tokens_seen
        prev_time, prev_tokens = self._last_log or (now, tokens)
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "time": now}
        if "loss" in logs:
            record["loss"] = logs["loss"]
            record["learning_rate"] = logs.get("learning_rate")
            record["grad_norm"] = logs.get("grad_norm")
            record["tokens_seen"] = tokens
            record["tokens_per_second"] = (tokens - prev_tokens) / (now - prev_time) if now > prev_time else None
            self._last_log = (now, tokens)
        if "eval_loss" in logs:
            record["eval_loss"] = logs["eval_loss"]
        if len(record) == 3:
            return
        self.rundir.append_metric(record)
        self.log(_describe(record, state.max_steps))
        self._latest.update({k: v for k, v in record.items() if k not in ("step", "epoch", "time")})
        self._write_status(state)

    def _write_status(self, state) -> None:
        now = time.time()
        self._last_write = now
        step, total = state.global_step, state.max_steps or 0
        fields = {"step": step, "total_steps": total, "epoch": state.epoch or 0.0,
                  "tokens_seen": state.num_input_tokens_seen,
                  "progress": min(1.0, step / total) if total else 0.0, **self._latest}
        if self._session_start:
            t0, step0, _ = self._session_start
            done = step - step0
            fields["eta_seconds"] = (now - t0) / done * (total - step) if done > 0 and total else None
        self.rundir.update_status(**fields)


def _describe(record: dict, total: int) -> str:
    parts = [f"step {record['step']}/{total}", f"epoch {record['epoch']:.2f}"]
    for key, fmt in (("loss", "{:.4f}"), ("eval_loss", "{:.4f}"), ("learning_rate", "{:.3g}"),
                     ("grad_norm", "{:.3f}"), ("tokens_per_second", "{:.0f}")):
        if record.get(key) is not None:
            parts.append(f"{key.replace('tokens_per_second', 'tok/s')} {fmt.format(record[key])}")
    return " | ".join(parts)


class RecordingCollator:
    """Wraps a collator and keeps a reference to the last batch it produced (for the live preview)."""

    def __init__(self, collator):
        self.collator = collator
        self.last_batch: dict | None = None

    def __call__(self, features):
        batch = self.collator(features)
        self.last_batch = batch
        return batch


def decode_segments(tokenizer, input_ids: list[int], labels: list[int], position_ids: list[int] | None) -> list[dict]:
    """Split a row into runs of tokens that are trained (label set) or masked, per packed sample."""
    segments: list[dict] = []
    run: list[int] = []
    trained = None
    sample = 0
    for i, tok in enumerate(input_ids[:PREVIEW_MAX_TOKENS]):
        is_trained = labels[i] != -100
        starts_sample = position_ids is not None and i > 0 and position_ids[i] == 0
        if run and (is_trained != trained or starts_sample):
            segments.append({"text": tokenizer.decode(run), "trained": trained, "sample": sample})
            run = []
        if starts_sample:
            sample += 1
        trained = is_trained
        run.append(tok)
    if run:
        segments.append({"text": tokenizer.decode(run), "trained": trained, "sample": sample})
    return segments


class LivePreviewCallback(TrainerCallback):
    """livepreview.json: the current batch decoded (trained spans marked) + a sample every N steps."""

    def __init__(self, rundir: RunDir, tokenizer, recorder: RecordingCollator, *, prompt_ids: list[int],
                 every: int, max_new_tokens: int, log):
        self.rundir = rundir
        self.tokenizer = tokenizer
        self.recorder = recorder
        self.prompt_ids = prompt_ids
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.log = log
        self._last_batch_time = 0.0
        self._preview: dict = {"batch": None, "sample": None}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        now = time.time()
        changed = False
        if now - self._last_batch_time >= BATCH_PREVIEW_INTERVAL_S and self.recorder.last_batch is not None:
            self._preview["batch"] = self._decode_batch(state.global_step)
            self._last_batch_time = now
            changed = True
        if self.every and model is not None and (state.global_step % self.every == 0 or state.global_step == 1):
            self._preview["sample"] = self._generate(model, state.global_step)
            changed = True
        if changed:
            self._preview["updated_at"] = time.time()
            self.rundir.write_preview(self._preview)

    def _decode_batch(self, step: int) -> dict:
        batch = self.recorder.last_batch
        ids = batch["input_ids"][0].tolist()
        labels = batch["labels"][0].tolist() if "labels" in batch else [-100] * len(ids)
        pos = batch["position_ids"][0].tolist() if batch.get("position_ids") is not None else None
        if "attention_mask" in batch:
            keep = int(batch["attention_mask"][0].sum())
            ids, labels = ids[:keep], labels[:keep]
        return {"step": step, "tokens": len(ids), "rows": int(batch["input_ids"].shape[0]),
                "segments": decode_segments(self.tokenizer, ids, labels, pos)}

    @torch.no_grad()
    def _generate(self, model, step: int) -> dict:
        was_training = model.training
        use_cache = getattr(model.config, "use_cache", False)
        model.eval()
        model.config.use_cache = True
        try:
            device = next(model.parameters()).device
            prompt = torch.tensor([self.prompt_ids], device=device)  # (1, T)
            out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=self.tokenizer.pad_token_id)
            text = self.tokenizer.decode(out[0, prompt.shape[1]:].tolist(), skip_special_tokens=True)
        except Exception as exc:  # a preview must never end a run
            self.log(f"[preview] generation failed: {type(exc).__name__}: {exc}")
            text = None
        finally:
            model.config.use_cache = use_cache
            if was_training:
                model.train()
        return {"step": step, "prompt": self.tokenizer.decode(self.prompt_ids), "completion": text}
