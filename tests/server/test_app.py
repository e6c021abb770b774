"""The server skeleton: health, error shape, catalog listings, UI, CORS."""

import json

from matelix import __version__


def test_health_is_public_and_reports_version(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": __version__}


def test_unknown_route_is_404_in_error_shape(client):
    r = client.get("/no/such/route")
    assert r.status_code == 404
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "/no/such/route" in err["message"]
    assert err["type"] == "invalid_request_error"


def test_wrong_method_is_405_in_error_shape(client):
    r = client.delete("/health")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_hardware_has_seed_fields_without_gpu(client):
    r = client.get("/hardware")
    assert r.status_code == 200
    body = r.json()
    for field in ("cuda", "mps", "num_cuda", "gpus", "num_cpus", "platform"):
        assert field in body
    assert isinstance(body["gpus"], list)
    assert body["num_cpus"] >= 1


def test_sysstatus_reports_ram_and_cpu(client):
    body = client.get("/sysstatus").json()
    assert 0 < body["ram_used"] <= body["ram_total"]
    assert 0 <= body["ram_percent"] <= 100
    assert "cpu_percent" in body and "gpu_util_percent" in body


def test_listings_are_empty_on_an_empty_home(client):
    assert client.get("/available_datasets").json() == []
    assert client.get("/available_models").json() == []
    assert client.get("/trainings").json() == []


def test_available_datasets_lists_files_with_format(client, home):
    (home / "datasets" / "c.csv").write_text("id,parent_id,system,Benutzer,Kontext,Assistentin\n1,,,Hi,,Hallo\n")
    (home / "datasets" / "t.csv").write_text("text\nHallo Welt\n")
    (home / "datasets" / "m.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    (home / "datasets" / "broken.jsonl").write_text("{not json\n")
    (home / "datasets" / "notes.txt").write_text("ignored")
    listed = {d["name"]: d for d in client.get("/available_datasets").json()}
    assert set(listed) == {"c.csv", "t.csv", "m.jsonl", "broken.jsonl"}
    assert listed["c.csv"]["format"] == "chat"
    assert listed["t.csv"]["format"] == "column"
    assert listed["m.jsonl"]["format"] == "messages"
    assert listed["broken.jsonl"]["format"] is None
    assert listed["t.csv"]["path"] == "datasets/t.csv"
    assert listed["t.csv"]["size_bytes"] > 0


def test_available_models_lists_local_models_and_finished_runs(client, home):
    (home / "models" / "m1").mkdir()
    (home / "models" / "m1" / "config.json").write_text("{}")
    (home / "models" / "empty").mkdir()
    run = home / "training_outputs" / "m1_2026-01-01_00-00-00"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "train_config.json").write_text('{"model_dir": "models/m1"}')
    models = client.get("/available_models").json()
    assert {(m["id"], m["kind"]) for m in models} == {("models/m1", "local"), ("m1_2026-01-01_00-00-00", "run")}
    runs = client.get("/trainings").json()
    assert [r["run_id"] for r in runs] == ["m1_2026-01-01_00-00-00"]
    assert runs[0]["has_model"] is True


def test_index_serves_packaged_ui_unless_user_static_exists(make_settings, home):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    with TestClient(create_app(make_settings())) as c:
        r = c.get("/")
        assert r.status_code == 200 and "MaTeLiX Lab" in r.text
    (home / "static").mkdir()
    (home / "static" / "index.html").write_text("<html>custom page</html>")
    with TestClient(create_app(make_settings())) as c:
        assert "custom page" in c.get("/").text


def test_cors_allows_only_configured_origins(make_settings):
    from fastapi.testclient import TestClient

    from matelix.server.app import create_app

    with TestClient(create_app(make_settings(cors_origins="http://good.example"))) as c:
        ok = c.get("/health", headers={"Origin": "http://good.example"})
        assert ok.headers.get("access-control-allow-origin") == "http://good.example"
        bad = c.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
    with TestClient(create_app(make_settings())) as c:
        r = c.get("/health", headers={"Origin": "http://good.example"})
        assert "access-control-allow-origin" not in r.headers


def test_live_server_answers_over_a_real_socket(live_server):
    import httpx

    assert httpx.get(live_server.url + "/health").json()["status"] == "ok"
