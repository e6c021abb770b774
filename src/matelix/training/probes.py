"""Probes: prompts a run answers before training, at each checkpoint and at the end, and how the answers score.

A probe comes from a probe file (JSONL; each record has `messages` — the last assistant message, if any, is the
reference answer — or `prompt`, and optionally `expected`) or, without one, from the run's held-out samples.
All probes of one evaluation are answered greedily in one left-padded batch through `model.generate`.

Scores compare an answer with its target (`expected`, else the reference answer): exact match and contains
(case and whitespace folded), and ROUGE-L F1 from the `rouge-score` package against the reference (else the
target). A probe counts as right when its answer contains the target.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from matelix.data.samples import Sample


class ProbeFileError(ValueError):
    """A probe file that cannot be used (the message names the line)."""


@dataclass
class Probe:
    id: int
    messages: list[dict] | None  # the prompt as chat messages (None: a plain text prompt)
    prompt: str  # what is shown: the last user message or the text prompt
    expected: str | None = None
    reference: str | None = None

    @property
    def target(self) -> str | None:
        return self.expected or self.reference

    def view(self) -> dict:
        out = asdict(self)
        out.pop("messages")
        return out


def _from_messages(pid: int, messages: list, expected: str | None) -> Probe | None:
    msgs = [{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in messages if isinstance(m, dict)]
    reference = None
    if msgs and msgs[-1]["role"] == "assistant":
        reference = msgs.pop()["content"]
    users = [m for m in msgs if m["role"] == "user"]
    if not users:
        return None
    return Probe(pid, msgs, users[-1]["content"], expected, reference)


def read_probe_file(path: Path, limit: int) -> list[Probe]:
    """Up to `limit` probes from a JSONL file; ProbeFileError for a line that is not a probe."""
    probes: list[Probe] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeFileError(f"cannot read the probe file: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ProbeFileError(f"line {number}: not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise ProbeFileError(f"line {number}: expected an object with `messages` or `prompt`")
        expected = record.get("expected")
        expected = str(expected) if expected not in (None, "") else None
        if isinstance(record.get("messages"), list):
            probe = _from_messages(len(probes), record["messages"], expected)
            if probe is None:
                raise ProbeFileError(f"line {number}: `messages` holds no user message")
        elif isinstance(record.get("prompt"), str) and record["prompt"].strip():
            probe = Probe(len(probes), None, record["prompt"], expected)
        else:
            raise ProbeFileError(f"line {number}: needs `messages` (a list) or `prompt` (a text)")
        probes.append(probe)
        if len(probes) >= limit:
            break
    if not probes:
        raise ProbeFileError("the probe file holds no probes")
    return probes


def probes_from_samples(samples: list[Sample], limit: int) -> list[Probe]:
    """Held-out chat samples as probes (their final answer is the reference); text samples give none."""
    probes: list[Probe] = []
    for sample in samples:
        if len(probes) >= limit:
            break
        if sample.messages:
            probe = _from_messages(len(probes), sample.messages, None)
            if probe is not None and probe.reference:
                probes.append(probe)
    return probes


def prompt_ids(tokenizer, probe: Probe, render_mode: str) -> list[int]:
    """The token ids the model continues: the chat template with a generation prompt, or the raw text."""
    if (probe.messages is None and render_mode == "column") or not getattr(tokenizer, "chat_template", None):
        return tokenizer.encode(probe.prompt, add_special_tokens=False)  # no template: the text as it is
    messages = probe.messages or [{"role": "user", "content": probe.prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False)


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy answers for all prompts in one left-padded batch; the model's mode and cache setting are
    restored afterwards (the Trainer turns the cache off for training)."""
    if not prompts:
        return []
    was_training = model.training
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", False)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    if config is not None:
        config.use_cache = True
    try:
        device = next(model.parameters()).device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, use_cache=True)
        return [tokenizer.decode(row[width:].tolist(), skip_special_tokens=True).strip() for row in out]
    finally:
        if config is not None:
            config.use_cache = use_cache
        if was_training:
            model.train()


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


class _WordTokenizer:
    """Unicode words, case-folded: rouge-score's default tokenizer keeps only [a-z0-9] and would drop
    every umlaut of a German answer."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return re.findall(r"\w+", text.casefold())


_scorer = None


def rouge_l(answer: str, reference: str) -> float:
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WordTokenizer())
    return round(_scorer.score(reference, answer)["rougeL"].fmeasure, 4)


def score(answer: str, probe: Probe) -> dict:
    """{"exact", "contains", "rouge_l", "correct"} for an answer (all None when the probe has no target)."""
    target = probe.target
    if not target:
        return {"exact": None, "contains": None, "rouge_l": None, "correct": None}
    exact = _fold(answer) == _fold(target)
    contains = _fold(target) in _fold(answer)
    return {"exact": exact, "contains": contains, "rouge_l": rouge_l(answer, probe.reference or target),
            "correct": contains}
