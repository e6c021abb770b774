"""Models that ship their own Python code (`auto_map` in config.json or tokenizer_config.json for an
architecture transformers does not know). The lab never runs such code unless `trust_remote_code` is set;
it refuses the model up front with a message that says so, rather than letting transformers fail deep
inside a load with a hub-oriented error.
"""

from __future__ import annotations

from pathlib import Path

from matelix.catalog import read_json


def needs_remote_code(folder: Path) -> bool:
    """True when loading `folder` would need code from the folder itself."""
    config = read_json(folder / "config.json")
    tokenizer_config = read_json(folder / "tokenizer_config.json")
    if config.get("auto_map"):
        from transformers import CONFIG_MAPPING

        if config.get("model_type") not in CONFIG_MAPPING:
            return True
    auto_map = tokenizer_config.get("auto_map")
    return bool(auto_map) and not _known_tokenizer(tokenizer_config.get("tokenizer_class"))


def _known_tokenizer(name: object) -> bool:
    if not isinstance(name, str):
        return False
    import transformers

    return hasattr(transformers, name) or hasattr(transformers, name.removesuffix("Fast"))


def remote_code_message(name: str) -> str:
    return (f"{name!r} ships its own Python code (auto_map in its config), which the lab does not run unless "
            "trust_remote_code is enabled (MATELIX_TRUST_REMOTE_CODE=true); enable it only for code you trust")
