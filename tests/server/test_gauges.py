"""Inference gauges: adapters on a shared base are counted apart from the models resident."""

from __future__ import annotations

import asyncio
import json
import shutil
from types import SimpleNamespace

from tests.conftest import save_tiny_adapter

from matelix.inference.registry import ModelRegistry
from matelix.server.gauges import inference_gauges


def test_adapters_on_a_shared_base_are_counted_apart(home, make_settings, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    run = save_tiny_adapter(home / "training_outputs" / "lora_run", tiny_model_dir, seed=1)
    (run / "status.json").write_text(json.dumps({"state": "completed"}), encoding="utf-8")

    async def scenario():
        registry = ModelRegistry(make_settings())
        await registry.acquire("models/tiny-demo")
        await registry.acquire("lora_run")
        app = SimpleNamespace(state=SimpleNamespace(registry=registry))
        families = {name: values for name, _, values, _ in inference_gauges(app)}
        await registry.close()
        return families

    families = asyncio.run(scenario())
    assert families["matelix_loaded_models"] == {(): 1.0}
    assert families["matelix_loaded_adapters"] == {(): 1.0}
    assert set(families["matelix_engine_active_requests"]) == {("models/tiny-demo",), ("lora_run",)}
