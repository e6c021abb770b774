"""Put the demo datasets, the tiny demo model and the real SmolLM2 model under home, when absent (what
`make serve` runs)."""

from __future__ import annotations

import os
import shutil
import tempfile

from matelix.demo import DEMO_DATASETS, DEMO_MODEL_NAME, demo_data_path
from matelix.settings import Settings


def ensure_demo_assets(settings: Settings, log=print, *, real_model: bool = True) -> None:
    settings.ensure_dirs()
    for name in DEMO_DATASETS:
        target = settings.datasets_dir / name
        if not target.exists():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=settings.datasets_dir)
            os.close(fd)
            shutil.copyfile(demo_data_path(name), tmp)
            os.replace(tmp, target)
            log(f"demo dataset -> {target}")
    model_dir = settings.models_dir / DEMO_MODEL_NAME
    if not (model_dir / "config.json").is_file():
        from matelix.demo.model import create_demo_model

        log(f"building the tiny demo model -> {model_dir} ...")
        create_demo_model(model_dir)
        log("demo model ready")
    if real_model:
        from matelix.demo.real_model import ensure_real_model

        ensure_real_model(settings.models_dir, log=log)
