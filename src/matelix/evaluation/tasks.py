"""lm-evaluation-harness tasks the lab ships as local files, and the task built from a run's held-out probes.

Shipped tasks are the YAML files beside this module (`dataset_path: json` with `data_files` naming a JSONL
file next to them); they are read here and handed to lm-eval as config dicts with the data file made
absolute, so nothing is looked up on a hub. `heldout` (a run's own probes) and `heldout:<run_id>` (another
run's, e.g. to score its base model) are `generate_until` tasks: the prompt rendered with the evaluated
model's chat template, the answer scored by whether it contains the expected words and by ROUGE-L.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml

TASK_DIR = Path(__file__).resolve().parent / "tasks"
HELDOUT = "heldout"


class TaskError(ValueError):
    """An unknown task name or a held-out task without probes (the message says which)."""


def shipped_tasks() -> dict[str, Path]:
    """Task name -> its YAML file."""
    return {p.stem: p for p in sorted(TASK_DIR.glob("*.yaml"))}


def describe_tasks() -> list[dict]:
    """Name, kind and size of every shipped task, plus the held-out task (for the API and the dashboard)."""
    out = []
    for name, path in shipped_tasks().items():
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = TASK_DIR / config["dataset_kwargs"]["data_files"]["test"]
        out.append({"name": name, "output_type": config["output_type"],
                    "items": sum(1 for line in data.read_text(encoding="utf-8").splitlines() if line.strip()),
                    "description": (path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip())})
    out.append({"name": HELDOUT, "output_type": "generate_until", "items": None,
                "description": "A run's own held-out probes (heldout = the evaluated run's, heldout:<run_id> = "
                               "another run's), answered with the model's chat template"})
    return out


def shipped_config(name: str) -> dict:
    config = yaml.safe_load(shipped_tasks()[name].read_text(encoding="utf-8"))
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"]["data_files"] = {split: str(TASK_DIR / f) for split, f in files.items()}
    return config


def _contains_and_rouge(doc: dict, results: list[str]) -> dict:
    from matelix.training.probes import Probe, score

    scores = score(results[0], Probe(0, None, doc["prompt"], expected=doc["target"], reference=doc["reference"]))
    return {"contains": float(scores["contains"]), "rouge_l": scores["rouge_l"]}


def heldout_config(probes: list[dict], tokenizer, scratch: Path, name: str = HELDOUT) -> dict:
    """A generate_until task over `probes` (evaluation.json's probe list) with their prompts rendered by the
    model's chat template; the JSONL it reads is written into `scratch`."""
    docs = []
    for probe in probes:
        target = probe.get("expected") or probe.get("reference")
        if not target:
            continue
        messages = [{"role": "user", "content": probe["prompt"]}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) \
            if getattr(tokenizer, "chat_template", None) else probe["prompt"]
        docs.append({"prompt": prompt, "target": target, "reference": probe.get("reference") or target})
    if not docs:
        raise TaskError(f"{name}: the run has no probes with an expected or reference answer")
    data = scratch / f"{name.replace(':', '_')}.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    return {"task": name.replace(":", "_"), "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data)}}, "test_split": "test",
            "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "{{target}}",
            "target_delimiter": "", "generation_kwargs": {"until": stops or ["\n\n"], "max_gen_toks": 48,
                                                          "do_sample": False},
            "process_results": _contains_and_rouge,
            "metric_list": [{"metric": "contains", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "rouge_l", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0}}


def task_configs(names: list[str], *, own_run: Path | None, outputs_dir: Path, tokenizer,
                 scratch: Path | None = None) -> list[dict]:
    """lm-eval config dicts for `names`. `own_run` is the evaluated run folder (for plain `heldout`)."""
    from matelix.catalog import read_json

    shipped = shipped_tasks()
    scratch = scratch or Path(tempfile.mkdtemp(prefix="matelix-lmeval-"))
    configs = []
    for name in names:
        if name in shipped:
            configs.append(shipped_config(name))
            continue
        if name == HELDOUT or name.startswith(HELDOUT + ":"):
            run_id = name.partition(":")[2]
            folder = outputs_dir / run_id if run_id else own_run
            if folder is None or (run_id and ("/" in run_id or run_id.startswith("."))):
                raise TaskError(f"{name}: the model is not a run; name one as heldout:<run_id>")
            report = read_json(folder / "evaluation.json")
            if not report.get("probes"):
                raise TaskError(f"{name}: run {folder.name!r} has no evaluation report with probes")
            configs.append(heldout_config(report["probes"], tokenizer, scratch, name))
            continue
        known = ", ".join([*shipped, HELDOUT, HELDOUT + ":<run_id>"])
        raise TaskError(f"unknown task {name!r}; use one of {known}")
    return configs
