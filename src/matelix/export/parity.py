"""The parity check: an export loaded back the way other tools load it must answer a fixed probe set with
the same greedy tokens as the lab's own model.

For each probe the chat prompt is rendered with both tokenizers (the prompt ids must be equal), both models
decode greedily from the lab's prompt ids, and both score the lab's answer (teacher forcing) so the
log-probability difference of every answer token is known. hf, adapter and gguf f16 must match every
token; q8_0 reports the share of matching tokens and the log-probability difference. A mismatch is
recorded as it is, never hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from matelix.inference.chat import render_chat, stop_token_ids

PROBES = (
    "Hallo! Wie geht es dir?",
    "Was ist LoRA?",
    "Erkläre kurz, was ein Sprachmodell ist.",
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Nenne drei Farben.",
    "Wie spät ist es?",
    "Summarize: the quick brown fox jumps over the lazy dog.",
)
MAX_NEW_TOKENS = 16


@dataclass
class Model:
    """A tokenizer and model as one side of the comparison."""

    tokenizer: object
    model: object


def greedy(model, prompt: list[int], max_new: int, stops: set[int]) -> list[int]:
    """Greedy answer ids (argmax at every step, no sampling settings of the model's own); ends at a stop
    token. The same call on both sides, so only the weights and the loader can make them differ."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new, do_sample=False, num_beams=1, eos_token_id=sorted(stops),
                              pad_token_id=min(stops))
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    return out[0, len(prompt):].tolist()


def answer_logprobs(model, prompt: list[int], answer: list[int]) -> tuple[list[float], list[int]]:
    """Log-probabilities of `answer` after `prompt` (teacher forcing), and the model's argmax at each step."""
    import torch

    if not answer:
        return [], []
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()  # (len(answer), V)
    logp = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(answer)
    return logp[torch.arange(len(answer)), target].tolist(), logits.argmax(-1).tolist()


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def check_parity(reference: Model, exported: Model, *, exact: bool, loader: str,
                 probes: tuple[str, ...] = PROBES, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Replay `probes` on both sides; `exact` (hf, adapter, f16) requires every token to match."""
    started = time.perf_counter()
    stops = stop_token_ids(reference.tokenizer, reference.model)
    rows, total, matched, diffs = [], 0, 0, []
    for text in probes:
        messages = [{"role": "user", "content": text}]
        prompt = render_chat(reference.tokenizer, messages)
        prompt_same = render_chat(exported.tokenizer, messages) == prompt
        ref = greedy(reference.model, prompt, max_new_tokens, stops)
        exp = greedy(exported.model, prompt, max_new_tokens, stops)
        ref_lp, _ = answer_logprobs(reference.model, prompt, ref)
        exp_lp, exp_top = answer_logprobs(exported.model, prompt, ref)
        diffs += [abs(a - b) for a, b in zip(ref_lp, exp_lp, strict=True)]
        prefix = common_prefix(ref, exp)
        total += len(ref)
        matched += prefix
        rows.append({"prompt": text, "prompt_tokens_identical": prompt_same, "answer_identical": ref == exp,
                     "tokens": len(ref), "tokens_matched": prefix,
                     "top1_agreement": sum(int(a == b) for a, b in zip(exp_top, ref, strict=True)),
                     "reference": reference.tokenizer.decode(ref, skip_special_tokens=True),
                     "export": reference.tokenizer.decode(exp, skip_special_tokens=True)})
    identical = sum(1 for r in rows if r["answer_identical"] and r["prompt_tokens_identical"])
    passed = identical == len(rows)
    result = {
        "loader": loader, "exact_required": exact, "passed": passed if exact else None,
        "probes": len(rows), "probes_identical": identical,
        "prompts_tokenized_identically": sum(1 for r in rows if r["prompt_tokens_identical"]),
        "tokens": total, "tokens_matched": matched, "token_match_share": round(matched / total, 4) if total else 1.0,
        "logprob_max_abs_diff": round(max(diffs), 6) if diffs else 0.0,
        "logprob_mean_abs_diff": round(sum(diffs) / len(diffs), 6) if diffs else 0.0,
        "max_new_tokens": max_new_tokens, "seconds": round(time.perf_counter() - started, 2), "rows": rows,
    }
    result["summary"] = summary(result)
    return result


def summary(result: dict) -> str:
    """One line for the dashboard and the CLI, e.g. "verified: 8/8 probes identical"."""
    head = f"{result['probes_identical']}/{result['probes']} probes identical"
    if result["exact_required"]:
        return f"verified: {head}" if result["passed"] else f"MISMATCH: {head}"
    return (f"approximate: {head}, {100 * result['token_match_share']:.1f}% of tokens, "
            f"mean |Δ logprob| {result['logprob_mean_abs_diff']:.4f}")
