"""Log-probabilities from the logits the engine already has (no second forward pass).

    chosen = step_logprobs(logits, rows=[0, 2], tokens=[17, 4], top=[0, 5])   # (B, V) logits of one step
    prompt = prompt_logprobs(logits[i, start:end], prompt_ids, top=1)           # a prefill row, all positions

They are the model's raw distribution (`log_softmax` of the logits, before temperature, penalties, bias or
masks), as OpenAI and vLLM report them, in float32. Only rows that asked pay for them.
"""

from __future__ import annotations

import torch

from matelix.inference.handle import TokenLogprob


def _entries(logprobs: torch.Tensor, tokens: torch.Tensor, top: list[int]) -> list[TokenLogprob]:
    """`logprobs` (R, V) log-softmaxed rows, `tokens` (R,) the token of each row, `top[r]` alternatives."""
    chosen = logprobs.gather(1, tokens[:, None])[:, 0].tolist()
    k = max(top, default=0)
    best_values, best_ids = (logprobs.topk(k, dim=-1) if k else (None, None))
    out = []
    for r, token in enumerate(tokens.tolist()):
        alternatives = ()
        if top[r]:
            alternatives = tuple(zip(best_ids[r, :top[r]].tolist(), best_values[r, :top[r]].tolist(), strict=True))
        out.append(TokenLogprob(token, chosen[r], alternatives))
    return out


def step_logprobs(logits: torch.Tensor, rows: list[int], tokens: list[int], top: list[int]) -> list[TokenLogprob]:
    """The logprob of `tokens[j]` in row `rows[j]` of `logits` (B, V), with `top[j]` alternatives each."""
    if not rows:
        return []
    index = torch.tensor(rows, device=logits.device)
    logprobs = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    return _entries(logprobs, torch.tensor(tokens, device=logits.device), top)


def prompt_logprobs(logits: torch.Tensor, prompt_ids: list[int], top: int) -> tuple[TokenLogprob, ...]:
    """Per prompt token, from the prefill logits of its row (T, V) aligned with `prompt_ids`: position i
    predicts token i + 1, so the first prompt token's logprob is None."""
    first = TokenLogprob(prompt_ids[0], None)
    if len(prompt_ids) < 2:
        return (first,)
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
    targets = torch.tensor(prompt_ids[1:], device=logits.device)
    return (first, *_entries(logprobs, targets, [top] * (len(prompt_ids) - 1)))
