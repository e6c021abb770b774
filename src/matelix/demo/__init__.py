"""Bundled demo assets: two small datasets and a factory for a tiny Llama model built locally."""

from importlib.resources import files
from pathlib import Path

DEMO_DATASETS = ("demo_chat.csv", "demo_text.csv")
DEMO_MODEL_NAME = "tiny-demo"


def demo_data_path(name: str) -> Path:
    """Path of a bundled demo dataset inside the installed package."""
    return Path(str(files("matelix.demo") / "data" / name))
