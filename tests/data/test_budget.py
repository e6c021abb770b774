"""Bounds on reading datasets in the server: one full read at a time, token statistics within a message
budget, and a preview that stops reading once it has its samples."""

from __future__ import annotations

import json

from matelix.data import budget
from matelix.data.samples import Sample
from matelix.data.validate import _within_budget, preview_samples


def test_a_second_read_waits_while_one_is_running():
    with budget.bounded_read():
        assert not budget._reads.acquire(blocking=False)
    assert budget._reads.acquire(blocking=False)
    budget._reads.release()


def test_token_statistics_stop_at_the_message_budget_but_measure_at_least_one_sample():
    chat = [Sample(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]) for _ in range(10)]
    assert len(list(_within_budget(chat, budget=7))) == 3
    assert len(list(_within_budget(chat, budget=100))) == 10
    assert len(list(_within_budget(chat, budget=1))) == 1
    assert len(list(_within_budget([Sample(text="t")] * 5, budget=3))) == 3


def test_a_preview_reads_only_the_records_it_shows(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    path = tmp_path / "d.jsonl"
    path.write_text(f"{good}\n{good}\n{{broken\n", encoding="utf-8")
    fmt, samples = preview_samples(path, n=2)
    assert fmt == "messages" and [s.row for s in samples] == [1, 2]


def test_the_collector_is_paused_while_reading_and_restored_after(tmp_path):
    import gc

    path = tmp_path / "t.csv"
    path.write_text("text\na\n", encoding="utf-8")
    assert gc.isenabled()
    with budget.gc_paused():
        with budget.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with budget.gc_paused():
            pass
        assert not gc.isenabled()  # a collector someone else turned off stays off
    finally:
        gc.enable()
    from matelix.data import load_dataset

    assert len(load_dataset(path).samples) == 1 and gc.isenabled()
