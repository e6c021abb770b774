"""Validation reports and the rendered preview."""

import json

import pytest
from transformers import AutoTokenizer

from matelix.data import DatasetError, preview_samples, validate_dataset
from matelix.demo import DEMO_DATASETS, demo_data_path


@pytest.mark.parametrize("name", DEMO_DATASETS)
def test_demo_datasets_validate_with_zero_errors(name, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    report = validate_dataset(demo_data_path(name), tokenizer=tok, chunk_size=1024)
    assert report.ok and report.error_count == 0, report.errors
    assert report.samples >= 10
    assert 0 < report.tokens.p50 <= report.tokens.p95 <= report.tokens.max
    json.loads(report.model_dump_json())


def test_a_broken_csv_report_names_the_rows(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("id,parent_id,system,Benutzer,Kontext,Assistentin\n"
                    "1,,,Hallo,,Hi\n2,1,,Frage,,\n3,42,,Waise,,Antwort\n4,5,,A,,B\n5,4,,C,,D\n1,,,doppelt,,x\n",
                    encoding="utf-8")
    report = validate_dataset(path)
    assert not report.ok and report.format == "chat" and report.rows == 6
    assert {e.row for e in report.errors} == {3, 4, 5, 6}
    assert report.warnings[0].row == 2
    assert report.tokens is None


def test_an_unreadable_file_is_one_error_naming_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\nGrüße\n".encode("latin-1"))
    report = validate_dataset(path)
    assert not report.ok and report.error_count == 1 and "line 2 is not valid UTF-8" in report.errors[0].message


def test_token_stats_count_what_chunk_size_cuts(tmp_path, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = tmp_path / "t.csv"
    path.write_text("text\nkurz\n" + '"' + " ".join(["lang"] * 300) + '"\n', encoding="utf-8")
    report = validate_dataset(path, tokenizer=tok, chunk_size=64)
    assert report.tokens.over_chunk_size == 1 and report.tokens.max > 64 and report.tokens.chunk_size == 64


def test_unknown_template_mode_raises(tmp_path):
    with pytest.raises(DatasetError, match="unknown template_mode"):
        validate_dataset(demo_data_path("demo_text.csv"), "nope")


def test_preview_marks_the_trained_span():
    fmt, samples = preview_samples(demo_data_path("demo_chat.csv"), n=2)
    assert fmt == "chat" and len(samples) == 2
    for s in samples:
        assert "".join(p["text"] for p in s.parts) == s.text
        trained = [p["text"] for p in s.parts if p["trained"]]
        assert len(trained) == 1 and trained[0].endswith("</s>")
        assert s.parts[0]["text"].endswith("<|Assistentin|>\n")
