"""The data path from a user's file to training-ready token ids (no server or Trainer dependency).

    loaded = load_dataset(path, "auto")                   # samples + problems
    train, evals = split_by_group(loaded.samples, 0.1, seed=0)
    tok = tokenize_samples(train, tokenizer, template_mode=loaded.render_mode, chunk_size=1024)
    rows = pack_examples(order_examples(tok.examples, sort_by_length=False, shuffle=True, seed=0), 1024)
    batch = PackedCollator(tokenizer.pad_token_id)(rows[:8])
"""

from matelix.data.formats import DATASET_SUFFIXES, FORMATS, TEMPLATE_MODES, detect_format, detect_format_safe
from matelix.data.load import load_dataset, render_mode_of
from matelix.data.packing import PackedCollator, PaddedCollator, pack_examples
from matelix.data.render import render_sample
from matelix.data.samples import DatasetError, LoadedDataset, Problem, Sample
from matelix.data.tokenize import TokenizedDataset, order_examples, split_by_group, tokenize_samples
from matelix.data.validate import (
    PreviewSample,
    TokenStats,
    ValidationReport,
    preview_samples,
    validate_dataset,
)

__all__ = [
    "DATASET_SUFFIXES", "FORMATS", "TEMPLATE_MODES", "DatasetError", "LoadedDataset", "PackedCollator",
    "PaddedCollator", "PreviewSample", "Problem", "Sample", "TokenStats", "TokenizedDataset", "ValidationReport",
    "detect_format", "detect_format_safe", "load_dataset", "order_examples", "pack_examples", "preview_samples",
    "render_mode_of", "render_sample", "split_by_group", "tokenize_samples", "validate_dataset",
]
