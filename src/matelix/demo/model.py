"""Tiny demo model factory: a few-million-parameter Llama with a byte-level BPE tokenizer trained on the
demo datasets, saved in Hugging Face format. Deterministic for a given seed; takes seconds on a CPU.

    matelix demo-model --out models/tiny-demo
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from matelix.data.template import PAD_TOKEN, ROLE_TOKENS, matelix_chat_template
from matelix.demo import SEED_DEMO_DATASETS, demo_data_path

BOS, EOS = "<s>", "</s>"
SPECIAL_TOKENS = [BOS, EOS, PAD_TOKEN, *ROLE_TOKENS.values()]


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of the demo model; the defaults give ~4M parameters."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False


def demo_texts() -> Iterator[str]:
    """Every text cell of the bundled demo datasets (the tokenizer's training corpus)."""
    for name in SEED_DEMO_DATASETS:
        with demo_data_path(name).open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                for key in ("text", "system", "Benutzer", "Kontext", "Assistentin"):
                    if row.get(key):
                        yield row[key]


def build_tokenizer(vocab_size: int, texts: Iterator[str] | None = None):
    """A byte-level BPE tokenizer (lossless round trip) with the MaTeLiX role tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts if texts is not None else demo_texts(), trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD_TOKEN,
                                 extra_special_tokens=list(ROLE_TOKENS.values()), model_max_length=2048,
                                 clean_up_tokenization_spaces=False)
    hf.chat_template = matelix_chat_template("chat")
    return hf


def build_model(tokenizer, spec: TinyLlamaSpec, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def create_demo_model(out: Path, *, seed: int = 0, spec: TinyLlamaSpec | None = None,
                      texts: Iterator[str] | None = None) -> Path:
    """Build the tiny model + tokenizer and save them to `out` (atomically: temp folder, then rename)."""
    spec = spec or TinyLlamaSpec()
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab_size, texts)
    model = build_model(tokenizer, spec, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
