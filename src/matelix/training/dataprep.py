"""Data side of a run: dataset file → train/eval samples → token examples → (packed) rows + collator."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matelix.data import PackedCollator, PaddedCollator, pack_examples
from matelix.data.load import load_dataset
from matelix.data.samples import LoadedDataset, Sample
from matelix.data.tokenize import order_examples, split_by_group, tokenize_samples
from matelix.training.config import TrainConfig


@dataclass
class SplitSamples:
    loaded: LoadedDataset
    train: list[Sample]
    eval: list[Sample]


@dataclass
class Examples:
    train: list[dict]
    eval: list[dict]
    collator: object
    stats: dict


def load_samples(config: TrainConfig, dataset_path: Path, log: Callable[[str], None]) -> SplitSamples:
    loaded = load_dataset(dataset_path, config.template_mode, config.column_name)
    log(f"Dataset {dataset_path.name}: format {loaded.format}, {loaded.rows} rows, {len(loaded.samples)} samples"
        f", {len(loaded.errors)} errors, {len(loaded.warnings)} warnings")
    for problem in loaded.problems[:10]:
        log(f"  row {problem.row}: {problem.severity}: {problem.message}")
    train, evals = split_by_group(loaded.samples, config.eval_split, config.seed)
    if config.eval_split:
        log(f"Split by thread: {len(train)} train / {len(evals)} eval samples")
    return SplitSamples(loaded, train, evals)


def mining_texts(samples: list[Sample], *, train_on_prompt: bool = False) -> list[str]:
    """What n-gram mining counts over: the text the model learns to write — each assistant message's content
    (every message's with `train_on_prompt`), a text sample's text — never the chat template around it.

    A phrase taken from template markup (`assistant\n` after `<|im_start|>`, a default system prompt) or
    from prompts (`What is the capital of`) changes how the model *reads* every such prompt, one averaged
    row in place of the tokens it knows, and a pretrained model answers them differently. Phrases of the
    answers are what a run trains and what generation saves tokens on.
    """
    texts = []
    for sample in samples:
        if sample.messages is None:
            texts.append(sample.text or "")
        else:
            texts.extend(str(m.get("content") or "") for m in sample.messages
                         if train_on_prompt or m.get("role") == "assistant")
    return [t for t in texts if t]


def build_examples(split: SplitSamples, tokenizer, config: TrainConfig, log: Callable[[str], None]) -> Examples:
    mode = split.loaded.render_mode
    train = tokenize_samples(split.train, tokenizer, template_mode=mode, chunk_size=config.chunk_size,
                             train_on_prompt=config.train_on_prompt)
    evals = tokenize_samples(split.eval, tokenizer, template_mode=mode, chunk_size=config.chunk_size,
                             train_on_prompt=config.train_on_prompt) if split.eval else None
    st = train.stats
    log(f"Tokenized: {st['examples']} examples, {st['tokens']:,} tokens ({st['trained_tokens']:,} trained), "
        f"{st['cut']} cut to chunk_size {config.chunk_size}, {st['dropped']} dropped")
    if not train.examples:
        raise ValueError("no training examples left after tokenization (every sample was dropped)")
    ordered = order_examples(train.examples, sort_by_length=config.sort_by_length, shuffle=config.shuffle,
                             seed=config.seed)
    eval_examples = evals.examples if evals else []
    if config.packing:
        rows = pack_examples(ordered, config.chunk_size)
        if config.shuffle:
            # Packing places examples by size; shuffle the rows so the step order still varies.
            random.Random(config.seed).shuffle(rows)
        eval_rows = pack_examples(eval_examples, config.chunk_size) if eval_examples else []
        collator = PackedCollator(pad_token_id=tokenizer.pad_token_id)
        log(f"Packed {len(ordered)} examples into {len(rows)} rows of up to {config.chunk_size} tokens")
    else:
        rows, eval_rows = ordered, eval_examples
        collator = PaddedCollator(pad_token_id=tokenizer.pad_token_id)
    return Examples(rows, eval_rows, collator, dict(st))
