"""The evaluation report of a run: what the fine-tune did, measured before, during and after training.

With a held-out split or a probe file the worker evaluates the base model before the first step, every
checkpoint and the final model: held-out loss and perplexity, and greedy answers to the probes (see
`probes`). Everything goes to `evaluation.json` in the run folder (replaced atomically after each point, so
the Monitor sees a checkpoint's answers as soon as they exist); a resumed run keeps the points up to its
checkpoint. Early stopping and "load the best model at the end" are the Trainer's own
(`EarlyStoppingCallback`, `load_best_model_at_end` on eval loss); the report and status say which step the
final model came from.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from matelix.catalog import read_json
from matelix.training.probes import (
    Probe,
    generate_answers,
    probes_from_samples,
    prompt_ids,
    read_probe_file,
    score,
)
from matelix.training.rundir import RunDir, write_json_atomic

EVALUATION_FILE = "evaluation.json"
STOP_FILE = RunDir(Path(".")).stop_path.name  # the run folder's stop request
# Perplexity is exp(loss); above this loss it is reported as None instead of overflowing.
MAX_LOSS_FOR_PERPLEXITY = 50.0


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss) or loss > MAX_LOSS_FOR_PERPLEXITY:
        return None
    return round(math.exp(loss), 4)


def summarize(point: dict) -> dict:
    """Accuracy (answers containing their target), exact-match rate and mean ROUGE-L over scored probes."""
    scored = [a for a in point.get("answers", []) if a.get("correct") is not None]
    if not scored:
        return {"scored": 0, "accuracy": None, "exact": None, "rouge_l": None}
    n = len(scored)
    return {"scored": n, "accuracy": round(sum(a["correct"] for a in scored) / n, 4),
            "exact": round(sum(a["exact"] for a in scored) / n, 4),
            "rouge_l": round(sum(a["rouge_l"] for a in scored) / n, 4)}


def flips(base: dict | None, final: dict | None) -> dict:
    """Probe ids that went wrong -> right and right -> wrong between two points."""
    out: dict[str, list[int]] = {"wrong_to_right": [], "right_to_wrong": []}
    if not base or not final:
        return out
    for before, after in zip(base.get("answers", []), final.get("answers", []), strict=False):
        if before.get("correct") is None or after.get("correct") is None:
            continue
        if not before["correct"] and after["correct"]:
            out["wrong_to_right"].append(before["probe"])
        elif before["correct"] and not after["correct"]:
            out["right_to_wrong"].append(before["probe"])
    return out


class EvaluationReport:
    """evaluation.json of one run, kept in memory and rewritten whole after every change."""

    def __init__(self, rundir: RunDir, probes: list[Probe], source: str, *, has_eval_loss: bool,
                 resume_step: int | None = None):
        self.path = rundir.path / EVALUATION_FILE
        self.started = time.time()
        old = read_json(self.path) if resume_step is not None else {}
        keep = [p for p in old.get("points", []) if p.get("label") != "final"
                and int(p.get("step", 0)) <= (resume_step or 0)]
        self.data = {"run_id": rundir.run_id, "source": source, "has_eval_loss": has_eval_loss,
                     "probes": [p.view() for p in probes], "points": keep,
                     "loss_curve": [r for r in old.get("loss_curve", []) if int(r["step"]) <= (resume_step or 0)],
                     "final_from_step": None, "best_checkpoint": None,
                     "timing": {"probe_seconds": 0.0, "loss_seconds": 0.0, "session_seconds": 0.0,
                                "probe_share": None}}

    def point(self, label: str) -> dict | None:
        return next((p for p in self.data["points"] if p["label"] == label), None)

    def add_point(self, point: dict) -> None:
        self.data["points"] = [p for p in self.data["points"] if p["label"] != point["label"]] + [point]
        self.write()

    def add_loss(self, step: int, loss: float) -> None:
        curve = [r for r in self.data["loss_curve"] if r["step"] != step]
        self.data["loss_curve"] = sorted(curve + [{"step": step, "eval_loss": loss}], key=lambda r: r["step"])

    def add_time(self, key: str, seconds: float) -> None:
        timing = self.data["timing"]
        timing[key] = round(timing[key] + seconds, 3)
        timing["session_seconds"] = round(time.time() - self.started, 3)
        timing["probe_share"] = round(timing["probe_seconds"] / timing["session_seconds"], 4) \
            if timing["session_seconds"] > 0 else None

    def write(self) -> None:
        base, final = self.point("base"), self.point("final")
        self.data["summary"] = {"base": summarize(base) if base else None,
                                "final": summarize(final) if final else None,
                                "flips": flips(base, final)}
        self.data["updated_at"] = time.time()
        write_json_atomic(self.path, self.data)


def read_report(rundir: RunDir) -> dict:
    """The run's evaluation.json ({} when the run has none)."""
    return read_json(rundir.path / EVALUATION_FILE)


class EvaluationCallback(TrainerCallback):
    """Records eval loss as the Trainer evaluates, and answers the probes at every checkpoint."""

    def __init__(self, report: EvaluationReport, tokenizer, probes: list[Probe], prompts: list[list[int]], *,
                 max_new_tokens: int, is_main: bool, log: Callable[[str], None]):
        self.report = report
        self.tokenizer = tokenizer
        self.probes = probes
        self.prompts = prompts
        self.max_new_tokens = max_new_tokens
        self.is_main = is_main
        self.log = log
        self._losses: dict[int, float] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_loss" in metrics and self.is_main:
            self._losses[state.global_step] = float(metrics["eval_loss"])
            self.report.add_loss(state.global_step, float(metrics["eval_loss"]))
            self.report.add_time("loss_seconds", float(metrics.get("eval_runtime") or 0.0))

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.is_main and model is not None:
            step = state.global_step
            if self.report.path.with_name(STOP_FILE).exists():
                # A stop saves this checkpoint and ends the run: answering the probes would delay it.
                self.log(f"[eval] checkpoint-{step}: probes skipped, a stop was requested")
                return
            self.evaluate(model, f"checkpoint-{step}", step, self._losses.get(step))

    def evaluate(self, model, label: str, step: int, eval_loss: float | None, **extra) -> dict:
        """Answer the probes with `model` and add the point (label, step, loss, answers) to the report."""
        start = time.perf_counter()
        try:
            texts = generate_answers(model, self.tokenizer, self.prompts, self.max_new_tokens)
        except Exception as exc:  # an evaluation must never end a run
            self.log(f"[eval] {label}: probe generation failed: {type(exc).__name__}: {exc}")
            texts = [None] * len(self.probes)
        seconds = time.perf_counter() - start
        answers = [{"probe": p.id, "text": t, **(score(t, p) if t is not None else score("", p))}
                   for p, t in zip(self.probes, texts, strict=True)]
        point = {"label": label, "step": step, "eval_loss": eval_loss, "perplexity": perplexity(eval_loss),
                 "probe_seconds": round(seconds, 3), "answers": answers, "time": time.time(), **extra}
        point["summary"] = summarize(point)
        self.report.add_time("probe_seconds", seconds)
        self.report.add_point(point)
        parts = [f"[eval] {label} (step {step})"]
        if eval_loss is not None:
            parts.append(f"eval loss {eval_loss:.4f}" + (f", perplexity {point['perplexity']:.2f}"
                                                         if point["perplexity"] is not None else ""))
        if self.probes:
            acc = point["summary"]["accuracy"]
            parts.append(f"{len(self.probes)} probes in {seconds:.1f} s"
                         + (f", {acc:.0%} right" if acc is not None else ""))
        self.log("; ".join(parts))
        return point


def resolve_probe_file(probe_file: str, settings) -> Path:
    """A probe file under datasets/ (the dataset rules: confined, must exist)."""
    from matelix.training.preflight import RunRejected, _confined

    for base in (settings.home, settings.datasets_dir):
        path = _confined(probe_file, [settings.datasets_dir, settings.home], base, "probe_file")
        if path.is_file():
            return _confined(probe_file, [settings.datasets_dir], base, "probe_file")
    raise RunRejected("not_found", f"probe_file: {probe_file!r} not found under datasets/", param="probe_file",
                      code="probe_file_not_found")


def check_probe_file(config, settings) -> None:
    """Preflight: the probe file exists under datasets/ and holds probes (RunRejected 4xx otherwise)."""
    from matelix.training.preflight import RunRejected
    from matelix.training.probes import ProbeFileError

    if not config.probe_file:
        return
    path = resolve_probe_file(config.probe_file, settings)
    try:
        read_probe_file(path, config.max_probes)
    except ProbeFileError as exc:
        raise RunRejected("invalid", f"probe_file: {exc}", param="probe_file", code="probe_file_invalid") from exc


def setup(config, settings, rundir: RunDir, eval_samples: list, tokenizer, render_mode: str, *,
          has_eval_loss: bool, resume_step: int | None, is_main: bool, log) -> EvaluationCallback | None:
    """The run's evaluation callback, or None when the run has neither a held-out split nor a probe file."""
    if config.probe_file:
        probes, source = read_probe_file(resolve_probe_file(config.probe_file, settings), config.max_probes), \
            "probe_file"
    elif has_eval_loss:
        probes, source = probes_from_samples(eval_samples, config.max_probes), "held_out"
    else:
        return None
    prompts = [prompt_ids(tokenizer, p, render_mode) for p in probes]
    report = EvaluationReport(rundir, probes, source, has_eval_loss=has_eval_loss, resume_step=resume_step)
    log(f"[eval] {len(probes)} probes from the {source.replace('_', ' ')}; base model, every checkpoint and "
        "the final model are evaluated")
    return EvaluationCallback(report, tokenizer, probes, prompts, max_new_tokens=config.probe_max_new_tokens,
                              is_main=is_main, log=log)


def _loss(trainer, prefix: str) -> tuple[float, float] | None:
    """(eval loss, seconds) of the current model on the held-out rows, or None without them."""
    if trainer.eval_dataset is None:
        return None
    start = time.perf_counter()
    metrics = trainer.evaluate(metric_key_prefix=prefix)  # every rank takes part (DDP)
    seconds = time.perf_counter() - start
    return float(metrics[f"{prefix}_loss"]), seconds


def evaluate_base(trainer, callback: EvaluationCallback | None) -> None:
    """The base model, before the first step (skipped when a resumed run already has it)."""
    if callback is None or callback.report.point("base") is not None:
        return
    loss = _loss(trainer, "base")
    if callback.is_main:
        if loss is not None:
            callback.report.add_time("loss_seconds", loss[1])
        callback.evaluate(trainer.model, "base", 0, loss[0] if loss else None)


def final_step(trainer) -> tuple[int, str | None]:
    """(step, checkpoint name) the final model comes from: the best checkpoint when the Trainer loaded it."""
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        name = Path(best).name
        return int(name.rsplit("-", 1)[-1]), name
    return trainer.state.global_step, None


def evaluate_final(trainer, callback: EvaluationCallback | None, rundir: RunDir, log, *, is_main: bool) -> None:
    """The final model (the best checkpoint's weights when load_best_model_at_end chose it)."""
    step, best = final_step(trainer)
    known = _known_loss(trainer, rundir, step)
    # The final weights are a checkpoint's that was evaluated already (the last step's or the best one):
    # its loss and answers are the final model's, so nothing is computed twice.
    loss = None if callback is None or known is not False else _loss(trainer, "final")
    if not is_main:
        return
    if best:
        log(f"Final model = best checkpoint {best} (step {step}, lowest eval loss)")
    rundir.update_status(final_from_step=step, best_checkpoint=best)
    if callback is None:
        return
    callback.report.data.update(final_from_step=step, best_checkpoint=best)
    if loss is not None:
        callback.report.add_time("loss_seconds", loss[1])
    earlier = callback.report.point(f"checkpoint-{step}") if known is not False else None
    if earlier is not None:
        callback.report.add_point({**earlier, "label": "final", "step": trainer.state.global_step, "from_step": step,
                                   "same_as": earlier["label"], "probe_seconds": 0.0, "time": time.time()})
        log(f"[eval] final model = {earlier['label']}: its loss and answers are the final ones")
    else:
        callback.evaluate(trainer.model, "final", trainer.state.global_step,
                          loss[0] if loss else (known if isinstance(known, float) else None), from_step=step)
    timing = callback.report.data["timing"]
    share = timing["probe_share"]
    log(f"[eval] probes took {timing['probe_seconds']:.1f} s of {timing['session_seconds']:.0f} s"
        + (f" ({share:.1%} of the run)" if share is not None else "")
        + f"; eval loss {timing['loss_seconds']:.1f} s")


def _known_loss(trainer, rundir: RunDir, step: int) -> float | None | bool:
    """The eval loss already measured for the checkpoint of `step` (None: the run has no held-out rows), or
    False when that checkpoint was not evaluated. Decided from what every process knows alike (the checkpoint
    folder, the Trainer's log history), so all ranks agree on whether to evaluate again."""
    if not (rundir.path / f"checkpoint-{step}").is_dir():
        return False
    if trainer.eval_dataset is None:
        return None
    losses = [h["eval_loss"] for h in trainer.state.log_history if h.get("step") == step and "eval_loss" in h]
    return float(losses[-1]) if losses else False


def best_model_settings(args, config) -> list:
    """Turn on the Trainer's best-model tracking on eval loss; the early-stopping callback when asked for."""
    from transformers import EarlyStoppingCallback

    if config.load_best_model_at_end or config.early_stopping_patience:
        args.load_best_model_at_end = bool(config.load_best_model_at_end)
        args.metric_for_best_model = "eval_loss"
        args.greater_is_better = False
    if config.early_stopping_patience:
        return [EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)]
    return []
