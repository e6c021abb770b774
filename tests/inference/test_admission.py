"""The admission gate over a real engine: request-shape limits, the server-wide bound on generations in
flight (all or nothing), release when generations end or are cancelled, and per-generation observations."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from matelix.inference.admission import AdmissionGate, Overloaded, RequestLimitExceeded
from matelix.inference.engine import RequestRejected
from matelix.inference.sampling import SamplingParams
from matelix.settings import Settings


@dataclass
class Resident:
    """What the gate needs of a loaded model: its id and engine."""

    id: str
    engine: object


def gate_for(tmp_path, **kw) -> AdmissionGate:
    return AdmissionGate(Settings(home=tmp_path, **kw))


@pytest.mark.parametrize("call, param", [
    ({"messages": 4}, "messages"),
    ({"texts": [("messages[0].content", "ok"), ("messages[1].content", "x" * 11)]}, "messages[1].content"),
    ({"max_new_tokens": 101}, "max_tokens"),
    ({"max_new_tokens": 101, "tokens_param": "max_new_tokens"}, "max_new_tokens"),
    ({"n": 3}, "n"),
    ({"stop": 5}, "stop"),
])
def test_limits_name_the_field_over_its_limit(tmp_path, call, param):
    gate = gate_for(tmp_path, max_messages=3, max_message_chars=10, max_new_tokens=100, max_n=2, max_stop_strings=4)
    gate.check_limits(messages=3, texts=[("m", "x" * 10)], max_new_tokens=100, n=2, stop=4)  # at the limits: fine
    with pytest.raises(RequestLimitExceeded) as info:
        gate.check_limits(**call)
    assert info.value.param == param and "MATELIX_MAX_" in str(info.value)


def test_the_bound_counts_every_choice_and_frees_slots_when_generations_end(tmp_path, make_engine):
    gate = gate_for(tmp_path, max_concurrent_generations=2, max_queued_generations=1)
    seen = []
    gate.on_finished = lambda model, **kw: seen.append((model, kw))
    model = Resident("m", make_engine())
    params = SamplingParams(max_new_tokens=3, temperature=0, ignore_eos=True)
    held = gate.submit(model, [[1, 2, 3]], SamplingParams(max_new_tokens=2000, ignore_eos=True), n=2)
    assert gate.in_flight == 2
    with pytest.raises(Overloaded):
        gate.submit(model, [[1, 2], [3, 4]], params)  # 2 more would make 4 > 3: nothing is queued
    assert gate.in_flight == 2 and gate.refused == 1
    one = gate.submit(model, [[5, 6]], params)
    assert one[0].wait().finish_reason == "length"
    for handle in held:
        handle.cancel()
        assert handle.wait().finish_reason == "cancelled"
    assert gate.in_flight == 0
    finished = {kw["completion_tokens"] for _, kw in seen}
    assert len(seen) == 3 and 3 in finished and all(m == "m" for m, _ in seen)
    done = next(kw for _, kw in seen if kw["completion_tokens"] == 3)
    assert done["prompt_tokens"] == 2 and done["ttft_s"] > 0


def test_a_rejected_prompt_leaves_nothing_queued(tmp_path, make_engine):
    gate = gate_for(tmp_path)
    model = Resident("m", make_engine())
    with pytest.raises(RequestRejected, match="prompt 1: the prompt is empty"):
        gate.submit(model, [[1, 2], []], SamplingParams(max_new_tokens=50, ignore_eos=True), n=2)
    assert gate.in_flight == 0


def test_a_callback_added_after_the_end_runs_at_once(make_engine):
    handle = make_engine().submit([1, 2], SamplingParams(max_new_tokens=1))
    result = handle.wait()
    calls = []
    handle.add_done_callback(lambda h, event: calls.append(event.finish_reason))
    assert calls == [result.finish_reason] and handle.first_token_at >= handle.submitted_at



def test_prepared_submits_run_off_the_event_loop(tmp_path, make_engine):
    gate = gate_for(tmp_path)
    model = Resident("m", make_engine())
    threads = []

    def prepare():
        threads.append(threading.current_thread())
        return [[1, 2, 3]]

    handles = asyncio.run(gate.submit_prepared(model, prepare, SamplingParams(max_new_tokens=2), n=2))
    assert threads and threads[0] is not threading.main_thread()
    assert [h.wait().finish_reason for h in handles] == ["length", "length"]



def test_a_prepared_submit_whose_caller_is_cancelled_leaves_nothing_running(tmp_path, make_engine):
    gate = gate_for(tmp_path)
    model = Resident("m", make_engine())
    started, release = threading.Event(), threading.Event()
    queued: list = []
    submit = gate.submit
    gate.submit = lambda *args, **kw: queued.extend(submit(*args, **kw)) or queued

    def prepare():
        started.set()
        release.wait(60)  # still rendering when the client goes away
        return [[4, 5]]

    async def scenario():
        task = asyncio.ensure_future(gate.submit_prepared(model, prepare, SamplingParams(max_new_tokens=2000,
                                                                                         ignore_eos=True)))
        await asyncio.to_thread(started.wait, 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()  # the worker thread queues the request after all ...
        while not (queued and queued[0].cancelled):
            await asyncio.sleep(0.01)  # ... and it is cancelled as soon as it is

    asyncio.run(asyncio.wait_for(scenario(), 120))
    assert queued[0].wait().finish_reason == "cancelled"
    assert gate.in_flight == 0
