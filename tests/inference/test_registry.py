"""The model registry: name resolution and confinement, default model, adapters, single loads, LRU, unload."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

import pytest
import torch

from matelix.inference.registry import ModelNotFound, ModelRefused, ModelRegistry
from matelix.inference.sampling import SamplingParams
from matelix.paths import PathRefused


@pytest.fixture
def lab_home(home, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    return home


def make_run(home, name: str, source, state: str = "completed", age_s: float = 0.0):
    run = home / "training_outputs" / name
    shutil.copytree(source, run)
    (run / "status.json").write_text(json.dumps({"state": state}), encoding="utf-8")
    stamp = time.time() - age_s
    for marker in ("config.json", "adapter_config.json"):
        if (run / marker).exists():
            os.utime(run / marker, (stamp, stamp))
    return run


def test_resolves_run_ids_local_models_and_home_relative_paths(lab_home, make_settings, tiny_model_dir):
    make_run(lab_home, "tiny_2026-01-01_00-00-00", tiny_model_dir)
    registry = ModelRegistry(make_settings(offline=True))
    assert registry.resolve("tiny_2026-01-01_00-00-00").id == "tiny_2026-01-01_00-00-00"
    assert registry.resolve("training_outputs/tiny_2026-01-01_00-00-00").id == "tiny_2026-01-01_00-00-00"
    assert registry.resolve("tiny-demo").id == "models/tiny-demo"
    source = registry.resolve("models/tiny-demo")
    assert source.id == "models/tiny-demo" and source.kind == "model" and source.display_path == "models/tiny-demo"
    assert registry.resolve(str(lab_home / "models" / "tiny-demo")).id == "models/tiny-demo"


@pytest.mark.parametrize("ref", ["../../etc", "/etc", "models/../../outside", "datasets", "~nosuchuser/x", "~"])
def test_paths_outside_the_model_folders_are_refused(lab_home, make_settings, ref):
    (lab_home.parent / "outside").mkdir(exist_ok=True)
    with pytest.raises(PathRefused):
        ModelRegistry(make_settings(offline=True)).resolve(ref)


def test_unknown_models_and_hub_ids_while_offline(lab_home, make_settings):
    with pytest.raises(ModelNotFound):
        ModelRegistry(make_settings(offline=True)).resolve("no-such-model")
    with pytest.raises(ModelNotFound):
        ModelRegistry(make_settings(offline=False)).resolve("models/no-such-model")
    with pytest.raises(ModelRefused, match="hub downloads are off"):
        ModelRegistry(make_settings(offline=True)).resolve("someone/some-model")
    assert ModelRegistry(make_settings(offline=False)).resolve("someone/some-model").kind == "hub"


def test_default_is_the_newest_finished_run_else_the_demo_model(lab_home, make_settings, tiny_model_dir):
    registry = ModelRegistry(make_settings())
    assert registry.default_source().id == "models/tiny-demo"
    make_run(lab_home, "old_run", tiny_model_dir, age_s=100)
    make_run(lab_home, "new_run", tiny_model_dir, age_s=10)
    make_run(lab_home, "running_run", tiny_model_dir, state="running")
    assert registry.default_source().id == "new_run"


def test_bad_devices_are_refused(make_settings):
    registry = ModelRegistry(make_settings())
    with pytest.raises(ModelRefused):
        registry.normalize_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelRefused, match="not available"):
            registry.normalize_device("cuda:0")


def test_concurrent_acquires_load_once_and_lru_evicts(lab_home, make_settings, tiny_model_dir):
    make_run(lab_home, "run_a", tiny_model_dir)

    async def scenario():
        registry = ModelRegistry(make_settings(max_loaded_models=1))
        first, second = await asyncio.gather(registry.acquire("models/tiny-demo"),
                                             registry.acquire("models/tiny-demo"))
        assert first is second
        other = await registry.acquire("run_a")
        status = registry.status()
        assert [m["id"] for m in status["loaded"]] == ["run_a"]
        assert first.model is None  # the evicted model's weights were released
        assert await registry.acquire() is other  # no ref: the model in use
        await registry.close()
        assert registry.status()["loaded"] == []

    asyncio.run(scenario())


def test_adapter_run_serves_the_same_tokens_as_the_peft_model(lab_home, make_settings, tiny_model_dir,
                                                              tiny_adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    make_run(lab_home, "lora_run", tiny_adapter_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference_model = PeftModel.from_pretrained(base, tiny_adapter_dir).eval()

    async def scenario():
        registry = ModelRegistry(make_settings())
        loaded = await registry.acquire("lora_run")
        assert loaded.source.kind == "adapter" and loaded.base_model == "models/tiny-demo"
        ids = loaded.render_chat([{"role": "user", "content": "Hallo"}])
        result = await loaded.engine.submit(ids, SamplingParams(max_new_tokens=12, temperature=0)).result()
        await registry.close()
        return ids, result

    ids, result = asyncio.run(scenario())
    expected = reference_model.generate(torch.tensor([ids]), max_new_tokens=12,
                                        do_sample=False)[0, len(ids):].tolist()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    base_only = plain.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):].tolist()
    assert result.token_ids == expected
    assert expected != base_only  # the adapter really changes the output


def test_unload_with_requests_in_flight_ends_them_cleanly(lab_home, make_settings):
    async def scenario():
        registry = ModelRegistry(make_settings())
        loaded = await registry.acquire()
        handle = loaded.engine.submit([5, 6, 7], SamplingParams(max_new_tokens=2000, temperature=0,
                                                                 ignore_eos=True))
        events = handle.__aiter__()
        await events.__anext__()
        assert await registry.unload() == [loaded.id]
        rest = [e async for e in events]
        assert rest[-1].finish_reason == "error" and "unloaded" in rest[-1].error
        assert not loaded.engine._thread.is_alive()

    asyncio.run(scenario())


def test_devices_are_probed_off_the_event_loop(lab_home, make_settings, monkeypatch):
    import threading

    probes = []
    registry = ModelRegistry(make_settings())
    for name in ("normalize_device", "_default_device"):
        probe = getattr(registry, name)
        monkeypatch.setattr(registry, name, lambda *a, probe=probe, name=name: probes.append(
            (name, threading.current_thread())) or probe(*a))

    async def scenario():
        await registry.acquire("models/tiny-demo")  # default device
        await registry.acquire("models/tiny-demo", "cpu")
        await registry.close()

    asyncio.run(scenario())
    assert {name for name, _ in probes} == {"normalize_device", "_default_device"}
    assert all(thread is not threading.main_thread() for _, thread in probes)
