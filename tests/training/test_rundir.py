"""Run folder files: atomic status, metrics truncation on resume, log line ids, complete checkpoints."""

import os

from matelix.training.rundir import LogReader, RunDir, process_alive, process_start_time


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


def test_process_identity_needs_pid_and_start_time():
    me = os.getpid()
    assert process_alive(me, process_start_time(me))
    assert not process_alive(me, process_start_time(me) - 100)
    assert not process_alive(None, None)
