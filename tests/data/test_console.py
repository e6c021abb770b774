"""`matelix data validate`: exit status and output for people and for scripts."""

import json

from matelix.cli import main
from matelix.demo import demo_data_path


def test_demo_dataset_is_ok_with_token_statistics(capsys, tiny_model_dir):
    assert main(["data", "validate", str(demo_data_path("demo_chat.csv")), "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "format chat" in out and "0 errors" in out and "tokens: p50" in out and out.rstrip().endswith("OK")


def test_broken_file_exits_1_and_lists_rows_as_json(tmp_path, capsys):
    path = tmp_path / "b.csv"
    path.write_text("id,parent_id,Benutzer,Assistentin\n1,,a,b\n2,1,c,d\n2,,e,f\n", encoding="utf-8")
    assert main(["data", "validate", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and [e["row"] for e in report["errors"]] == [3]


def test_wrong_requests_exit_2(tmp_path, capsys):
    assert main(["data", "validate", str(demo_data_path("demo_text.csv")), "--template-mode", "nope"]) == 2
    assert main(["data", "validate", str(demo_data_path("demo_text.csv")), "--model", str(tmp_path / "x")]) == 2
    assert "unknown template_mode" in capsys.readouterr().err


def test_missing_file_exits_2_and_names_it(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert main(["data", "validate", str(missing)]) == 2
    assert main(["data", "validate", str(tmp_path)]) == 2  # a folder is not a dataset file either
    err = capsys.readouterr().err
    assert f"no dataset file at {missing}" in err and f"no dataset file at {tmp_path}\n" in err
