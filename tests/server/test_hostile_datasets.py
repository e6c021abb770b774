"""Hostile dataset files through every route that reads one: deeply nested JSON, a deep parent_id chain, a
large parent_id cycle, a 50 MB single-line CSV, NUL bytes and mixed encodings. Each is a 2xx or a 400 in the
error shape naming where the file is bad — never a 500 — and the server keeps answering."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from matelix.data.readers import MAX_JSON_DEPTH
from matelix.data.threads import MAX_HISTORY_MESSAGES

FORM = {"X-Requested-With": "test"}
CHAT_HEADER = "id,parent_id,system,Benutzer,Kontext,Assistentin\n"


def _upload(client, name: str, content: bytes):
    return client.post("/datasets/upload", headers=FORM, files={"file": (name, content, "application/octet-stream")})


def _invalid(r, *needles: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_dataset", error
    for needle in needles:
        assert needle in error["message"], error["message"]


def test_a_json_file_of_nested_brackets_is_a_400_naming_its_line(client):
    r = _upload(client, "deep.json", b"[\n" + b"[" * 100_000)
    _invalid(r, "line 2", "nested too deeply")


def test_a_nested_second_jsonl_line_is_a_400_on_every_route_and_in_the_cli(client, home, tiny_model_dir):
    record = json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})
    content = (record + "\n" + "[" * 100_000 + "\n").encode()
    assert _upload(client, "deep.jsonl", content).status_code == 201  # only the first record is read here
    _invalid(client.post("/datasets/validate", json={"dataset": "deep.jsonl"}), "line 2", "nested too deeply")
    _invalid(client.get("/datasets/deep.jsonl/preview", params={"n": 5}), "line 2")
    shutil.copytree(tiny_model_dir, home / "models" / "tiny-demo")
    start = client.post("/start", json={"model_dir": "models/tiny-demo", "csv_path": "datasets/deep.jsonl"})
    assert start.status_code == 400 and start.json()["error"]["code"] == "dataset_invalid"
    assert "line 2" in start.json()["error"]["message"]
    assert client.get("/trainings").json() == []
    listed = {d["name"]: d for d in client.get("/available_datasets").json()}
    assert listed["deep.jsonl"]["format"] == "messages"
    cli = subprocess.run([sys.executable, "-m", "matelix", "data", "validate", str(home / "datasets" / "deep.jsonl")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert "line 2" in cli.stdout + cli.stderr


def test_a_deeply_nested_first_jsonl_line_is_refused_at_upload_and_unlisted_as_unreadable(client, home):
    _invalid(_upload(client, "d.jsonl", b"\n\n" + b"{\"a\":" * 5000 + b"1" + b"}" * 5000 + b"\n"), "line 3")
    (home / "datasets" / "d.jsonl").write_bytes(b"[" * 100_000)
    assert {d["name"]: d["format"] for d in client.get("/available_datasets").json()}["d.jsonl"] is None


def test_nesting_within_the_limit_is_a_record_problem_not_a_failure(client):
    nested = "[" * (MAX_JSON_DEPTH // 2) + "]" * (MAX_JSON_DEPTH // 2)
    lines = [json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
             '{"messages": [{"role": "user", "content": ' + nested + '}]}']
    assert _upload(client, "mid.jsonl", "\n".join(lines).encode()).status_code == 201
    report = client.post("/datasets/validate", json={"dataset": "mid.jsonl"}).json()
    assert report["samples"] == 1 and report["error_count"] == 1 and report["errors"][0]["row"] == 2


def test_a_deep_parent_id_chain_previews_and_validates(client):
    rows = 30_000
    body = "".join(f"{i},{i - 1 if i > 1 else ''},,U{i},,A{i}\n" for i in range(1, rows + 1))
    assert _upload(client, "chain.csv", (CHAT_HEADER + body).encode()).status_code == 201
    preview = client.get("/datasets/chain.csv/preview", params={"n": 1})
    assert preview.status_code == 200 and preview.json()["samples"][0]["row"] == 1
    report = client.post("/datasets/validate", json={"dataset": "chain.csv"}).json()
    assert report["samples"] == rows and report["error_count"] == 0 and report["warning_count"] == 1
    assert str(MAX_HISTORY_MESSAGES) in report["warnings"][0]["message"]


def test_a_large_parent_id_cycle_is_reported_row_by_row_in_a_bounded_report(client):
    n = 100_000
    body = "".join(f"{i},{i - 1 if i > 1 else n},,U{i},,A{i}\n" for i in range(1, n + 1))
    assert _upload(client, "cycle.csv", (CHAT_HEADER + body).encode()).status_code == 201
    r = client.post("/datasets/validate", json={"dataset": "cycle.csv"})
    assert r.status_code == 200
    report = r.json()
    assert report["samples"] == 0 and report["error_count"] == n + 1  # every row, and "no samples"
    assert len(report["errors"]) == 1000 and len(r.content) < 400_000


@pytest.mark.parametrize("cell", [True, False])
def test_a_50_mb_single_line_csv(client, cell):
    """One line of 50 MB: as a header only it holds no data row (400); as one huge cell it is one sample."""
    big = b"x" * (50 * 1024 * 1024)
    if cell:
        r = _upload(client, "huge.csv", b"text\n" + big)
        assert r.status_code == 201, r.text
        report = client.post("/datasets/validate", json={"dataset": "huge.csv"}).json()
        assert report["ok"] and report["samples"] == 1
        sample = client.get("/datasets/huge.csv/preview", params={"n": 1}).json()["samples"][0]
        assert len(sample["text"]) >= 50 * 1024 * 1024
    else:
        _invalid(_upload(client, "huge.csv", big), "no data rows")
    assert client.get("/health").status_code == 200


def test_nul_bytes_in_a_csv_are_text_and_mixed_encodings_name_their_line(client, home):
    assert _upload(client, "nul.csv", b"text\nvor\x00nach\nzwei\n").status_code == 201
    report = client.post("/datasets/validate", json={"dataset": "nul.csv"}).json()
    assert report["ok"] and report["samples"] == 2
    preview = client.get("/datasets/nul.csv/preview", params={"n": 1}).json()
    assert "vor\x00nach" in preview["samples"][0]["text"]
    mixed = "text\nGrüße\n".encode() + "Grüße\n".encode("latin-1") + "Grüße\n".encode()
    _invalid(_upload(client, "mixed.csv", mixed), "line 3", "not valid UTF-8")
    (home / "datasets" / "mixed.csv").write_bytes(mixed)
    _invalid(client.post("/datasets/validate", json={"dataset": "mixed.csv"}), "line 3", "not valid UTF-8")
    _invalid(client.get("/datasets/mixed.csv/preview"), "line 3")


def test_upload_parts_left_by_a_killed_server_are_removed_at_start_up(home, make_settings):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    stale, fresh = home / "datasets" / ".upload-abc.part", home / "datasets" / ".upload-new.part"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with TestClient(create_app(make_settings())) as c:
        assert c.get("/health").status_code == 200
    assert not stale.exists()
    assert fresh.exists()  # written just now: maybe another server's upload in progress
