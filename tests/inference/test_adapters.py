"""Adapters on one resident base: mixed-adapter batches, lazy loading and LRU eviction, checkpoints and run@latest."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch
from tests.conftest import save_tiny_adapter

from matelix.inference.registry import ModelNotFound, ModelRegistry
from matelix.inference.sampling import SamplingParams

PROMPT = [{"role": "user", "content": "Hallo, wie geht es?"}]


@pytest.fixture
def lab_home(home, tiny_model_dir):
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    return home


def make_lora_run(home: Path, name: str, base_dir: Path, seed: int, state: str = "completed") -> Path:
    run = home / "training_outputs" / name
    save_tiny_adapter(run, base_dir, seed)
    (run / "status.json").write_text(json.dumps({"state": state}), encoding="utf-8")
    return run


def add_checkpoint(run: Path, base_dir: Path, step: int, seed: int, complete: bool = True) -> Path:
    """A Trainer checkpoint: weights first, trainer_state.json last (absent while it is being written)."""
    ckpt = save_tiny_adapter(run / f"checkpoint-{step}", base_dir, seed)
    if complete:
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}), encoding="utf-8")
    return ckpt


def merged_greedy(base_dir: Path, adapter_dir: Path | None, ids: list[int], n: int) -> list[int]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    out = model.eval().generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return out[0, len(ids):].tolist()


def greedy(n: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=n, temperature=0, ignore_eos=True)


def test_adapters_of_one_base_share_it_and_run_in_one_batch(lab_home, make_settings, tiny_model_dir):
    runs = [make_lora_run(lab_home, f"lora_{i}", tiny_model_dir, seed=i) for i in range(2)]
    seen_batches: list[set[str | None]] = []

    async def scenario():
        registry = ModelRegistry(make_settings())
        base = await registry.acquire("models/tiny-demo")
        first = await registry.acquire("lora_0")
        second = await registry.acquire("lora_1")
        assert (first.served_as, second.served_as, base.served_as) == ("adapter", "adapter", "model")
        assert first.engine.base_engine is base.engine and second.engine.base_engine is base.engine
        assert first.memory_bytes() < base.memory_bytes() / 10  # an adapter, not a copy of the base

        slots = base.engine.lora
        select = slots.select

        def spy(adapters):  # what each forward pass runs: one adapter per row
            seen_batches.append(set(adapters))
            select(adapters)

        slots.select = spy
        ids = base.render_chat(PROMPT)
        handles = [m.engine.submit(ids, greedy(10)) for m in (base, first, second)]
        results = [await h.result() for h in handles]
        assert base.engine.shared_prefill_requests == 0  # one prompt, three weights: never one prefilled row
        status = registry.status()
        await registry.close()
        return ids, results, status

    ids, results, status = asyncio.run(scenario())
    assert [m["served_as"] for m in status["loaded"]] == ["model", "adapter", "adapter"]
    assert {None, "lora1", "lora2"} in seen_batches  # base and both adapters in one forward pass
    expected = [merged_greedy(tiny_model_dir, d, ids, 10) for d in (None, *runs)]
    assert [r.token_ids for r in results] == expected
    assert len({tuple(e) for e in expected}) == 3  # each adapter really changes the output


def test_a_lone_adapter_run_is_still_merged(lab_home, make_settings, tiny_model_dir):
    make_lora_run(lab_home, "lora_0", tiny_model_dir, seed=0)

    async def scenario():
        registry = ModelRegistry(make_settings())
        loaded = await registry.acquire("lora_0")
        status = registry.status()
        await registry.close()
        return loaded.served_as, status

    served_as, status = asyncio.run(scenario())
    assert served_as == "merged" and [m["id"] for m in status["loaded"]] == ["lora_0"]


def test_least_recently_used_idle_adapter_is_removed(lab_home, make_settings, tiny_model_dir):
    for i in range(3):
        make_lora_run(lab_home, f"lora_{i}", tiny_model_dir, seed=i)

    async def scenario():
        registry = ModelRegistry(make_settings(max_loaded_adapters=2))
        base = await registry.acquire("models/tiny-demo")
        first = await registry.acquire("lora_0")
        await registry.acquire("lora_1")
        await registry.acquire("lora_0")  # now lora_1 is the least recently used
        third = await registry.acquire("lora_2")
        resident = [m["id"] for m in registry.status()["loaded"]]
        names = set(base.engine.lora.columns)
        ids = base.render_chat(PROMPT)
        results = [await m.engine.submit(ids, greedy(6)).result() for m in (first, third)]
        again = await registry.acquire("lora_1")  # loaded again, lazily
        await registry.close()
        return resident, names, ids, results, again.served_as

    resident, names, ids, results, again = asyncio.run(scenario())
    assert resident == ["models/tiny-demo", "lora_2", "lora_0"]
    assert len(names) == 2 and again == "adapter"
    # the adapters left beside the removed one still compute their own outputs
    runs = lab_home / "training_outputs"
    assert [r.token_ids for r in results] == [merged_greedy(tiny_model_dir, runs / n, ids, 6) for n in ("lora_0", "lora_2")]


def test_an_adapter_that_trains_whole_modules_is_merged_beside_its_base(lab_home, make_settings, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = lab_home / "training_outputs" / "full_head"
    lora = LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    peft_model.peft_config["default"].base_model_name_or_path = "models/tiny-demo"
    peft_model.save_pretrained(run)

    async def scenario():
        registry = ModelRegistry(make_settings(max_loaded_models=2))
        await registry.acquire("models/tiny-demo")
        loaded = await registry.acquire("full_head")
        await registry.close()
        return loaded.served_as

    assert asyncio.run(scenario()) == "merged"


def test_run_at_latest_follows_the_newest_complete_checkpoint(lab_home, make_settings, tiny_model_dir):
    run = lab_home / "training_outputs" / "live_run"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running"}), encoding="utf-8")
    first = add_checkpoint(run, tiny_model_dir, 2, seed=1)
    add_checkpoint(run, tiny_model_dir, 4, seed=2, complete=False)  # being written: never served

    async def scenario():
        registry = ModelRegistry(make_settings())
        before = await registry.acquire("live_run@latest")
        ids = before.render_chat(PROMPT)
        old = await before.engine.submit(ids, greedy(8)).result()
        with pytest.raises(ModelNotFound, match="not complete yet"):
            registry.resolve("live_run@checkpoint-4")
        (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}', encoding="utf-8")
        after = await registry.acquire("live_run@latest")
        new = await after.engine.submit(ids, greedy(8)).result()
        await registry.close()
        return before, after, ids, old, new

    before, after, ids, old, new = asyncio.run(scenario())
    assert (before.id, before.source.checkpoint_step, before.served_as) == ("live_run@checkpoint-2", 2, "adapter")
    assert (after.id, after.source.checkpoint_step) == ("live_run@checkpoint-4", 4)
    assert old.token_ids == merged_greedy(tiny_model_dir, first, ids, 8)
    assert new.token_ids == merged_greedy(tiny_model_dir, run / "checkpoint-4", ids, 8)


def test_checkpoint_references_are_checked(lab_home, make_settings, tiny_model_dir):
    run = make_lora_run(lab_home, "done_run", tiny_model_dir, seed=0)
    add_checkpoint(run, tiny_model_dir, 3, seed=1)
    registry = ModelRegistry(make_settings())
    assert registry.resolve("done_run@latest").id == "done_run"  # a finished run's latest is its final model
    assert registry.resolve("done_run@checkpoint-3").checkpoint_step == 3
    with pytest.raises(ModelNotFound, match="no checkpoint-9"):
        registry.resolve("done_run@checkpoint-9")
    with pytest.raises(ModelNotFound, match="no training run"):
        registry.resolve("nope@latest")
    (lab_home / "training_outputs" / "empty_run").mkdir()
    with pytest.raises(ModelNotFound, match="no complete checkpoint"):
        registry.resolve("empty_run@latest")


def test_loading_an_adapter_does_not_wait_for_the_running_generations(lab_home, make_settings, tiny_model_dir):
    for i in range(2):
        make_lora_run(lab_home, f"lora_{i}", tiny_model_dir, seed=i)

    async def scenario():
        registry = ModelRegistry(make_settings())
        await registry.acquire("models/tiny-demo")
        first = await registry.acquire("lora_0")
        running = first.engine.submit(first.render_chat(PROMPT), greedy(1500))
        events = running.__aiter__()
        await events.__anext__()  # decoding has started
        second = await registry.acquire("lora_1")  # attached between two steps of the running request
        still_running = not running.finished
        result = await second.engine.submit(second.render_chat(PROMPT), greedy(3)).result()
        running.cancel()
        final = await running.result()
        await registry.close()
        return still_running, result, final

    still_running, result, final = asyncio.run(scenario())
    assert still_running and result.finish_reason == "length"
    assert final.finish_reason == "cancelled"
