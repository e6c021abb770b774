"""load_dataset: every format, forced modes, and clear errors for files that cannot be read."""

import json

import pytest

from matelix.data import DatasetError, detect_format, load_dataset


def _write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _jsonl(tmp_path, name: str, records: list) -> object:
    return _write(tmp_path, name, "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")


def test_column_csv_one_sample_per_row(tmp_path):
    path = _write(tmp_path, "t.csv", 'text,other\n"Erster, Text",x\n,y\n"Zweiter\nmit Umbruch",z\n')
    loaded = load_dataset(path)
    assert loaded.format == "column" and loaded.render_mode == "column" and loaded.rows == 3
    assert [(s.text, s.row) for s in loaded.samples] == [("Erster, Text", 1), ("Zweiter\nmit Umbruch", 3)]
    assert [(p.row, p.severity) for p in loaded.problems] == [(2, "warning")]
    assert [s.text for s in load_dataset(path, "column", column_name="other").samples] == ["x", "y", "z"]


def test_a_utf8_bom_is_ignored(tmp_path):
    path = _write(tmp_path, "t.csv", "\ufefftext\nHallo\n".encode())
    assert detect_format(path) == "column" and load_dataset(path).samples[0].text == "Hallo"


def test_messages_jsonl_trains_every_assistant_turn(tmp_path):
    path = _jsonl(tmp_path, "m.jsonl", [
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
                      {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"},
                      {"role": "assistant", "content": [{"type": "text", "text": "A2"}]}]},
        {"messages": [{"role": "user", "content": "nur Frage"}]},
        {"messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]},
    ])
    loaded = load_dataset(path)
    assert loaded.format == "messages" and loaded.rows == 3
    assert [len(s.messages) for s in loaded.samples] == [3, 5]
    assert loaded.samples[1].messages[-1] == {"role": "assistant", "content": "A2"}
    assert loaded.samples[0].group == loaded.samples[1].group == "row-1"
    assert [(p.row, p.severity) for p in loaded.problems] == [(2, "warning"), (3, "error")]
    assert "tool" in loaded.problems[1].message


def test_sharegpt_maps_human_and_gpt(tmp_path):
    path = _jsonl(tmp_path, "s.jsonl", [{"id": "t1", "system": "Sei kurz.", "conversations": [
        {"from": "human", "value": "Hallo"}, {"from": "gpt", "value": "Hi"}]}])
    loaded = load_dataset(path)
    assert loaded.format == "sharegpt"
    assert loaded.samples[0].messages == [{"role": "system", "content": "Sei kurz."},
                                          {"role": "user", "content": "Hallo"},
                                          {"role": "assistant", "content": "Hi"}]
    assert loaded.samples[0].group == "t1"


def test_alpaca_json_array_with_input_and_system(tmp_path):
    path = _write(tmp_path, "a.json", json.dumps([
        {"instruction": "Übersetze", "input": "Hallo", "output": "Hello", "system": "Du übersetzt."},
        {"instruction": "Sag nichts", "input": "", "output": ""}]))
    loaded = load_dataset(path)
    assert loaded.format == "alpaca" and loaded.rows == 2
    assert loaded.samples[0].messages == [{"role": "system", "content": "Du übersetzt."},
                                          {"role": "user", "content": "Übersetze\n\nHallo"},
                                          {"role": "assistant", "content": "Hello"}]
    assert [(p.row, p.severity) for p in loaded.problems] == [(2, "warning")]


def test_jsonl_column_records_and_forced_dialogplus_rendering(tmp_path):
    assert load_dataset(_jsonl(tmp_path, "c.jsonl", [{"text": "eins"}, {"text": "zwei"}])).format == "column"
    path = _jsonl(tmp_path, "m.jsonl", [{"messages": [{"role": "user", "content": "U"},
                                                      {"role": "assistant", "content": "A"}]}])
    loaded = load_dataset(path, "dialogplus")
    assert loaded.format == "messages" and loaded.render_mode == "dialogplus"


def test_non_utf8_file_names_the_line(tmp_path):
    path = _write(tmp_path, "bad.csv", b"text\nok\nkaputt \xe4\n")
    with pytest.raises(DatasetError, match=r"line 3 is not valid UTF-8"):
        load_dataset(path)


def test_bad_csv_quoting_names_the_row(tmp_path):
    path = _write(tmp_path, "q.csv", 'text\n"gut"\n"schlecht"x\n')
    with pytest.raises(DatasetError, match=r"bad CSV quoting in data row 2 \(line 3\)"):
        load_dataset(path)


def test_missing_columns_and_unknown_mode_are_clear_errors(tmp_path):
    path = _write(tmp_path, "c.csv", "id,Benutzer\n1,x\n")
    with pytest.raises(DatasetError, match="missing required column.*parent_id, Assistentin"):
        load_dataset(path, "chat")
    with pytest.raises(DatasetError, match="missing column 'text'"):
        load_dataset(path)
    with pytest.raises(DatasetError, match="unknown template_mode 'fancy'"):
        load_dataset(path, "fancy")
    with pytest.raises(DatasetError, match="needs a JSONL or JSON file"):
        load_dataset(path, "alpaca")


def test_bad_json_and_unsupported_files(tmp_path):
    with pytest.raises(DatasetError, match="line 2 .*not valid JSON"):
        load_dataset(_write(tmp_path, "b.jsonl", '{"text": "a"}\n{oops\n'))
    with pytest.raises(DatasetError, match="unsupported file type '.parquet'"):
        load_dataset(_write(tmp_path, "x.parquet", b"PAR1"))
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "missing.csv")
