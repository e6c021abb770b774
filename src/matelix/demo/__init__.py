"""Bundled demo assets: small datasets, a factory for a tiny Llama model built locally, and the real
SmolLM2 model converted from a packaged GGUF (`real_model.py`)."""

from importlib.resources import files
from pathlib import Path

# The seed-format demo data (German threads, text with code); the tiny model's tokenizer is trained on it.
SEED_DEMO_DATASETS = ("demo_chat.csv", "demo_text.csv")
# Teaches SmolLM2 a persona it visibly lacks (name Mati, maker MaTeLiX Lab, a sign-off) within minutes of
# LoRA on a CPU; the held-out file has the same form plus an `expected` key per conversation.
PERSONA_DATASET = "demo_persona.jsonl"
PERSONA_HELDOUT = "demo_persona_heldout.jsonl"
DEMO_DATASETS = (*SEED_DEMO_DATASETS, PERSONA_DATASET, PERSONA_HELDOUT)
DEMO_MODEL_NAME = "tiny-demo"


def demo_data_path(name: str) -> Path:
    """Path of a bundled demo dataset inside the installed package."""
    return Path(str(files("matelix.demo") / "data" / name))
