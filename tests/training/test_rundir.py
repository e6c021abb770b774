"""Run folder files: atomic status, metrics truncation on resume, log line ids, followed metrics, complete
checkpoints."""

import os
import threading

from matelix.training.rundir import LogReader, MetricsReader, RunDir, process_alive, process_start_time


def test_status_updates_merge_and_leave_no_temp_files(tmp_path):
    rd = RunDir(tmp_path)
    rd.update_status(state="running", step=1)
    rd.update_status(step=2)
    assert rd.read_status()["state"] == "running" and rd.read_status()["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


def test_log_ids_grow_by_line_and_skip_a_partial_line(tmp_path):
    rd = RunDir(tmp_path)
    reader = LogReader(rd.log_path)
    assert reader.read(0) == []
    with rd.log_path.open("a") as fh:
        fh.write("one\ntwo\nthr")
    assert reader.read(0) == [{"id": 1, "line": "one"}, {"id": 2, "line": "two"}]
    with rd.log_path.open("a") as fh:
        fh.write("ee\nprogress 1\rprogress 2\n")
    assert reader.read(2) == [{"id": 3, "line": "three"}, {"id": 4, "line": "progress 2"}]
    assert reader.read(1, limit=1) == [{"id": 2, "line": "two"}]
    assert LogReader(rd.log_path).read(3) == [{"id": 4, "line": "progress 2"}]


def test_one_log_reader_shared_by_threads_numbers_every_line_once(tmp_path):
    rd = RunDir(tmp_path)
    reader = LogReader(rd.log_path)
    lines = [f"line {i}" for i in range(1, 2001)]
    seen: list[list[dict]] = []

    def follow():
        got, since = [], 0
        while since < len(lines):
            for line in reader.read(since, 50):
                got.append(line)
                since = line["id"]
        seen.append(got)

    followers = [threading.Thread(target=follow) for _ in range(4)]
    for t in followers:
        t.start()
    with rd.log_path.open("a") as fh:
        for line in lines:
            fh.write(line + "\n")
            fh.flush()
    for t in followers:
        t.join(timeout=60)
    expected = [{"id": i, "line": line} for i, line in enumerate(lines, 1)]
    assert len(seen) == 4 and all(got == expected for got in seen)
    assert reader.read(0, 10_000) == expected


def test_metrics_reader_returns_only_new_whole_lines_and_rereads_a_rewritten_file(tmp_path):
    rd = RunDir(tmp_path)
    reader = MetricsReader(rd.metrics_path)
    assert reader.read_new() == (0, [])
    rd.append_metric({"step": 1})
    rd.append_metric({"step": 2})
    assert reader.read_new() == (0, [{"step": 1}, {"step": 2}])
    with rd.metrics_path.open("a") as fh:
        fh.write('{"step": 3')  # being written: not returned yet
    assert reader.read_new() == (2, [])
    with rd.metrics_path.open("a") as fh:
        fh.write('}\nnot json\n{"step": 4}\n')
    assert reader.read_new() == (2, [{"step": 3}, {"step": 4}])
    rd.truncate_metrics(1)  # a resume rewrites the file: numbering starts again
    assert reader.read_new() == (0, [{"step": 1}])


def test_truncate_metrics_drops_steps_after_the_checkpoint(tmp_path):
    rd = RunDir(tmp_path)
    for step in (1, 2, 3, 4):
        rd.append_metric({"step": step, "loss": 1.0})
    rd.truncate_metrics(2)
    assert [m["step"] for m in rd.read_metrics()] == [1, 2]


def test_last_complete_checkpoint_skips_a_half_written_one(tmp_path):
    rd = RunDir(tmp_path)
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, '{"global_st'), (8, None)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "model.safetensors").write_bytes(b"x")
        if state is not None:  # trainer_state.json is the Trainer's last file; 6 was cut off while writing it
            (ckpt / "trainer_state.json").write_text(state)
    assert rd.last_complete_checkpoint().name == "checkpoint-4"


def test_a_cut_off_final_save_is_neither_a_checkpoint_nor_a_model(tmp_path):
    rd = RunDir(tmp_path)
    leftover = tmp_path / ".final-tmp"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}")
    (leftover / "model.safetensors").write_bytes(b"x")
    assert rd.checkpoints() == [] and rd.last_complete_checkpoint() is None and not rd.has_model()


def test_process_identity_needs_pid_and_start_time():
    me = os.getpid()
    assert process_alive(me, process_start_time(me))
    assert not process_alive(me, process_start_time(me) - 100)
    assert not process_alive(None, None)
