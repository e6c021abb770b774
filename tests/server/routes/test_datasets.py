"""Dataset routes: validation report, preview, upload; every user path confined to datasets/."""

import shutil

import pytest

from matelix.demo import demo_data_path

FORM = {"X-Requested-With": "test"}  # a form upload needs it (server/browser_guard.py)

BROKEN = ("id,parent_id,system,Benutzer,Kontext,Assistentin\n"
          "1,,,Hallo,,Hi\n2,77,,Waise,,Antwort\n3,4,,A,,B\n4,3,,C,,D\n")


@pytest.fixture
def datasets(settings):
    for name in ("demo_chat.csv", "demo_text.csv"):
        shutil.copy(demo_data_path(name), settings.datasets_dir / name)
    (settings.datasets_dir / "sub").mkdir()
    (settings.datasets_dir / "sub" / "broken.csv").write_text(BROKEN, encoding="utf-8")
    return settings.datasets_dir


def test_validate_demo_dataset_is_ok(client, datasets):
    r = client.post("/datasets/validate", json={"dataset": "demo_chat.csv"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is True and body["format"] == "chat" and body["errors"] == [] and body["samples"] > 100
    assert body["tokens"] is None


def test_validate_with_a_model_reports_token_lengths(client, datasets, settings, tiny_model_dir):
    shutil.copytree(tiny_model_dir, settings.models_dir / "tiny")
    r = client.post("/datasets/validate", json={"dataset": "datasets/demo_text.csv", "model": "models/tiny",
                                                "chunk_size": 64})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens["chunk_size"] == 64 and 0 < tokens["p50"] <= tokens["p95"] <= tokens["max"]
    assert tokens["over_chunk_size"] > 0


def test_validate_broken_file_names_rows(client, datasets):
    body = client.post("/datasets/validate", json={"dataset": "sub/broken.csv"}).json()
    assert body["ok"] is False and body["file"] == "sub/broken.csv"
    assert sorted(e["row"] for e in body["errors"]) == [2, 3, 4]


def test_validate_rejects_bad_requests(client, datasets):
    r = client.post("/datasets/validate", json={"dataset": "demo_chat.csv", "template_mode": "fancy"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "template_mode"
    r = client.post("/datasets/validate", json={"dataset": "demo_chat.csv", "surprise": 1})
    assert r.status_code == 422 and "surprise" in r.json()["error"]["message"]
    r = client.post("/datasets/validate", json={"dataset": "nope.csv"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "dataset_not_found"
    r = client.post("/datasets/validate", json={"dataset": "demo_chat.csv", "model": "models/none"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


@pytest.mark.parametrize("name", ["../secret.csv", "/etc/passwd", "sub/../../secret.csv", "demo\x00.csv",
                                  "datasets/../../secret.csv"])
def test_validate_refuses_paths_outside_datasets(client, datasets, settings, name):
    (settings.home / "secret.csv").write_text("text\ngeheim\n", encoding="utf-8")
    r = client.post("/datasets/validate", json={"dataset": name})
    assert 400 <= r.status_code < 500
    assert r.json()["error"]["param"] == "dataset"
    assert "geheim" not in r.text


def test_preview_marks_the_trained_span(client, datasets):
    r = client.get("/datasets/demo_chat.csv/preview", params={"n": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == "chat" and len(body["samples"]) == 3
    first = body["samples"][0]
    assert first["text"].startswith("<|System|>\n")
    assert [p["trained"] for p in first["parts"]] == [False, True, False]
    assert first["parts"][1]["text"].endswith("</s>")


def test_preview_in_a_subfolder_and_in_column_mode(client, datasets):
    r = client.get("/datasets/demo_text.csv/preview", params={"n": 1})
    assert r.json()["samples"][0]["parts"] == [{"text": r.json()["samples"][0]["text"], "trained": True}]
    assert client.get("/datasets/sub/broken.csv/preview").status_code == 200


@pytest.mark.parametrize(("content", "message"), [
    ("text\nGrüße\n".encode("latin-1"), "line 2 is not valid UTF-8"),
    (b'text\n"gut"\n"schlecht"x\n', "bad CSV quoting in data row 2 (line 3)"),
    (b"id,Benutzer\n1,x\n", "missing column 'text'"),
])
def test_validate_an_unreadable_file_is_a_400_naming_the_place(client, settings, content, message):
    (settings.datasets_dir / "bad.csv").write_bytes(content)
    r = client.post("/datasets/validate", json={"dataset": "bad.csv"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_dataset"
    assert message in r.json()["error"]["message"]


def test_preview_errors_are_4xx(client, datasets, settings):
    (settings.datasets_dir / "bad.csv").write_bytes("text\nGrüße\n".encode("latin-1"))
    r = client.get("/datasets/bad.csv/preview")
    assert r.status_code == 400 and "line 2 is not valid UTF-8" in r.json()["error"]["message"]
    assert client.get("/datasets/missing.csv/preview").status_code == 404
    assert client.get("/datasets/demo_chat.csv/preview", params={"n": 0}).status_code == 422
    assert client.get("/datasets/demo_chat.csv/preview", params={"template_mode": "x"}).status_code == 422


@pytest.mark.parametrize("raw", ["..%2Fsecret.csv", "%2E%2E/secret.csv", "sub/..%2F..%2Fsecret.csv",
                                 "%2Fetc%2Fpasswd", "demo%00.csv"])
def test_preview_refuses_traversal(client, datasets, settings, raw):
    (settings.home / "secret.csv").write_text("text\ngeheim\n", encoding="utf-8")
    r = client.get(f"/datasets/{raw}/preview")
    assert 400 <= r.status_code < 500
    assert "geheim" not in r.text


def test_upload_saves_under_a_sanitised_name(client, settings):
    r = client.post("/datasets/upload", headers=FORM, files={"file": ("Meine Daten (neu).csv", b"text\nHallo\n", "text/csv")})
    assert r.status_code == 201, r.text
    assert r.json() == {"name": "Meine_Daten_neu_.csv", "size_bytes": 11, "format": "column"}
    assert (settings.datasets_dir / "Meine_Daten_neu_.csv").read_bytes() == b"text\nHallo\n"
    assert client.post("/datasets/validate", json={"dataset": "Meine_Daten_neu_.csv"}).json()["ok"] is True
    assert [p.name for p in settings.datasets_dir.iterdir()] == ["Meine_Daten_neu_.csv"]


def test_upload_refuses_overwrite_unless_asked(client, settings):
    files = {"file": ("d.jsonl", b'{"text": "a"}\n', "application/json")}
    assert client.post("/datasets/upload", headers=FORM, files=files).status_code == 201
    r = client.post("/datasets/upload", headers=FORM, files=files)
    assert r.status_code == 409 and r.json()["error"]["code"] == "dataset_exists"
    assert client.post("/datasets/upload", headers=FORM, files=files, data={"overwrite": "true"}).status_code == 201


@pytest.mark.parametrize("name", ["../evil.csv", "/tmp/evil.csv", "sub/evil.csv", "..\\evil.csv", "evil\x00.csv",
                                  "..", "evil.exe", ".csv"])
def test_upload_refuses_names_that_escape_or_are_not_datasets(client, settings, name):
    r = client.post("/datasets/upload", headers=FORM, files={"file": ("x.csv", b"text\na\n", "text/csv")}, data={"name": name})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "name"
    assert list(settings.datasets_dir.iterdir()) == []
    assert not (settings.home / "evil.csv").exists()


def test_upload_size_limit_leaves_nothing_behind(make_settings):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    settings = make_settings(max_upload_mb=1)
    with TestClient(create_app(settings)) as c:
        r = c.post("/datasets/upload", headers=FORM, files={"file": ("big.csv", b"text\n" + b"x" * (2 << 20), "text/csv")})
    assert r.status_code == 413
    assert list(settings.datasets_dir.iterdir()) == []


def test_upload_refuses_unreadable_content(client, settings):
    r = client.post("/datasets/upload", headers=FORM, files={"file": ("d.jsonl", b"{not json\n", "application/json")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = client.post("/datasets/upload", headers=FORM, files={"file": ("e.csv", b"", "text/csv")})
    assert r.status_code == 400
    assert list(settings.datasets_dir.iterdir()) == []


def test_a_symlink_out_of_datasets_is_refused(client, settings):
    (settings.home / "secret.csv").write_text("text\ngeheim\n", encoding="utf-8")
    (settings.datasets_dir / "link.csv").symlink_to(settings.home / "secret.csv")
    r = client.post("/datasets/validate", json={"dataset": "link.csv"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "path_refused"
    assert client.get("/datasets/link.csv/preview").status_code == 400


@pytest.mark.parametrize("filename, content, reason", [
    ("s.json", b'"str"', "JSON string, not an object"),
    ("a.json", b"[]", "empty JSON array"),
    ("n.json", b"[1, 2]", "first record is a JSON number"),
    ("b.jsonl", b"\n  \n\n", "only blank lines"),
    ("l.jsonl", b'["a"]\n', "first record is a JSON array"),
    ("h.csv", b"text\n", "no data rows"),
])
def test_upload_refuses_files_without_a_record(client, settings, filename, content, reason):
    r = client.post("/datasets/upload", headers=FORM, files={"file": (filename, content, "application/octet-stream")})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "file" and error["code"] == "invalid_dataset" and reason in error["message"]
    assert list(settings.datasets_dir.iterdir()) == []


@pytest.mark.parametrize("filename, content, fmt", [
    ("one.json", b'{"messages": [{"role": "user", "content": "Hi"}]}', "messages"),
    ("many.json", b'[{"instruction": "a", "output": "b"}]', "alpaca"),
    ("lines.jsonl", b'\n{"text": "a"}\n', "column"),
])
def test_upload_detects_the_format_of_the_first_record(client, filename, content, fmt):
    r = client.post("/datasets/upload", headers=FORM, files={"file": (filename, content, "application/json")})
    assert r.status_code == 201, r.text
    assert r.json()["format"] == fmt


def test_the_report_speaks_the_request_language(client, datasets):
    german = {"Accept-Language": "de"}
    body = client.post("/datasets/validate", json={"dataset": "sub/broken.csv"}, headers=german).json()
    messages = {e["row"]: e["message"] for e in body["errors"]}
    assert messages[2] == "parent_id '77' gibt es nicht; die Zeile beginnt einen eigenen Gesprächsfaden"
    assert "parent_id-Kreis" in messages[3] or "parent_id-Kette" in messages[3]
    r = client.post("/datasets/validate", json={"dataset": "nope.csv"}, headers=german)
    assert r.json()["error"]["message"] == "dataset: kein Datensatz 'nope.csv' unter datasets/"
    r = client.post("/datasets/upload", files={"file": ("leer.csv", b"")}, headers={**FORM, **german})
    assert r.status_code == 400 and r.json()["error"]["message"] == "file: die hochgeladene Datei ist leer"
    english = client.post("/datasets/validate", json={"dataset": "sub/broken.csv"}).json()
    assert {e["row"]: e["message"] for e in english["errors"]}[2].startswith("parent_id '77' does not exist")
