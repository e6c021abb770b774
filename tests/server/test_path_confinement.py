"""Path confinement, as a matrix: every field or URL part that names a file, folder, dataset, model or run is
tried with `../`, absolute paths, URL-encoded traversal, symlinks pointing outside home, NUL bytes and very
long names. Every attempt is a 4xx, nothing outside home is read (its secret never shows up in a response)
or written (a sentinel folder outside home stays byte-identical), and no run folder is created."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from matelix.server.app import create_app
from matelix.settings import Settings

FORM = {"X-Requested-With": "test"}  # a form upload needs it (server/browser_guard.py)

SECRET = "SECRET-OUTSIDE-HOME"
KEY = "confine-key"
RUN_CONFIG = ('{"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "max_steps": 1}')


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir):
    """home/ with a model, a dataset and symlinks that lead to outside/, which holds a dataset, a model and
    a run folder of its own (all readable, so only confinement keeps them out)."""
    root = tmp_path_factory.mktemp("confine")
    home, outside = root / "home", root / "outside"
    for sub in ("datasets", "training_outputs", "models"):
        (home / sub).mkdir(parents=True)
    outside.mkdir()
    shutil.copytree(tiny_model_dir, home / "models" / "tiny")
    chat = f"id,parent_id,system,Benutzer,Kontext,Assistentin\n1,,,{SECRET},,{SECRET}\n"
    (home / "datasets" / "chat.csv").write_text(chat.replace(SECRET, "Hallo"))
    (outside / "secret.csv").write_text(chat)
    shutil.copytree(tiny_model_dir, outside / "model")
    (outside / "run").mkdir()
    (outside / "run" / "train_config.json").write_text(RUN_CONFIG)
    (outside / "run" / "status.json").write_text(f'{{"state": "stopped", "note": "{SECRET}"}}')
    (outside / "run" / "training.log").write_text(SECRET + "\n")
    (home / "datasets" / "link.csv").symlink_to(outside / "secret.csv")
    (home / "datasets" / "linkdir").symlink_to(outside)
    (home / "models" / "linkmodel").symlink_to(outside / "model")
    (home / "training_outputs" / "linkrun").symlink_to(outside / "run")
    return home, outside


@pytest.fixture(scope="module")
def client(world):
    home, _ = world
    with TestClient(create_app(Settings(home=home, api_key=KEY)), headers={"X-API-Key": KEY}) as c:
        yield c


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def attacks(outside: Path, target: str, link: str) -> list[str]:
    """Hostile names for one kind of thing: `target` is its name inside outside/, `link` a home-relative
    symlink to it."""
    return [f"../outside/{target}", f"../../outside/{target}", f"../../../../../../{outside}/{target}",
            str(outside / target), "/etc/passwd", f"..%2F..%2Foutside%2F{target}", f"%2e%2e/%2e%2e/outside/{target}",
            link, f"{link}/../../..", f"{target}\x00.csv", "a\x00", "n" * 300, "d/" * 700]


def assert_refused(response, what: str) -> None:
    assert 400 <= response.status_code < 500 and response.status_code not in (401, 403), \
        f"{what}: {response.status_code} {response.text[:300]}"
    assert SECRET not in response.text, f"{what} leaked content from outside home"


@pytest.fixture(autouse=True)
def nothing_changes(world):
    home, outside = world
    before_outside, before_runs = snapshot(outside), sorted(p.name for p in (home / "training_outputs").iterdir())
    before_datasets = sorted(p.name for p in (home / "datasets").iterdir())
    yield
    assert snapshot(outside) == before_outside, "something outside home was written"
    assert sorted(p.name for p in (home / "training_outputs").iterdir()) == before_runs, "a run folder appeared"
    assert sorted(p.name for p in (home / "datasets").iterdir()) == before_datasets


START = {"model_dir": "models/tiny", "csv_path": "datasets/chat.csv", "max_steps": 1}


@pytest.mark.parametrize("field, target, link", [
    ("csv_path", "secret.csv", "datasets/link.csv"),
    ("model_dir", "model", "models/linkmodel"),
    ("resume_from", "run", "training_outputs/linkrun"),
])
def test_start_refuses_every_hostile_path_field(client, world, field, target, link):
    for value in attacks(world[1], target, link) + [link.split("/", 1)[1], "datasets/linkdir/secret.csv"]:
        assert_refused(client.post("/start", json={**START, field: value}), f"/start {field}={value!r}")


RUN_ROUTES = [("GET", "/trainings/{}"), ("POST", "/trainings/{}/resume"), ("DELETE", "/trainings/{}")]
RUN_QUERIES = [("GET", "/status"), ("GET", "/logs"), ("GET", "/livepreview"), ("POST", "/stop")]


def test_run_ids_in_urls_and_queries_are_confined(client, world):
    for value in attacks(world[1], "run", "linkrun") + ["linkrun", "..", "."]:
        for method, template in RUN_ROUTES:
            url = template.format(quote(value, safe="").replace(".", "%2E"))  # the client keeps "..", sent encoded
            assert_refused(client.request(method, url), f"{method} {url}")
        for method, path in RUN_QUERIES:
            assert_refused(client.request(method, path, params={"run_id": value}), f"{method} {path}?run_id={value!r}")
    assert (world[1] / "run" / "train_config.json").is_file()  # DELETE never followed the link


def test_the_log_websocket_refuses_a_run_outside_home(client):
    for value in ("linkrun", "../outside/run", "/etc"):
        with client.websocket_connect(f"/ws/logs?run_id={quote(value, safe='')}") as ws:
            event = ws.receive_json()
        assert event["type"] == "error" and SECRET not in str(event)


def test_dataset_names_are_confined(client, world):
    for value in attacks(world[1], "secret.csv", "link.csv") + ["linkdir/secret.csv", "datasets/link.csv"]:
        assert_refused(client.get(f"/datasets/{quote(value, safe='')}/preview"), f"preview {value!r}")
        assert_refused(client.post("/datasets/validate", json={"dataset": value}), f"validate dataset={value!r}")
    for value in attacks(world[1], "model", "models/linkmodel"):
        assert_refused(client.post("/datasets/validate", json={"dataset": "chat.csv", "model": value}),
                       f"validate model={value!r}")
        assert_refused(client.get("/datasets/chat.csv/preview", params={"model": value}), f"preview model={value!r}")


def test_upload_names_are_confined(client, world):
    """Names with folder parts, NUL or a link target are refused; odd characters (`%`) are replaced, and
    such a file lands directly in datasets/ (removed again here)."""
    datasets = (world[0] / "datasets").resolve()
    for name in attacks(world[1], "secret.csv", "link.csv") + ["link.csv", "linkdir/x.csv", "..\\x.csv", ".csv"]:
        r = client.post("/datasets/upload", headers=FORM, files={"file": ("x.csv", b"text\nhello\n", "text/csv")},
                        data={"name": name, "overwrite": "true"})
        if r.status_code == 201:
            saved = datasets / r.json()["name"]
            assert "%" in name and saved.parent == datasets and not saved.is_symlink(), name
            saved.unlink()
        else:
            assert_refused(r, f"upload name={name!r}")
    r = client.post("/datasets/upload", headers=FORM, files={"file": ("../../outside/evil.csv", b"text\nhello\n", "text/csv")})
    assert_refused(r, "upload filename with folders")


@pytest.mark.parametrize("path, field", [("/load_inference", "model_dir"), ("/unload_inference", "model_dir"),
                                         ("/chat", "model_dir")])
def test_lab_inference_model_dirs_are_confined(client, world, path, field):
    for value in attacks(world[1], "model", "models/linkmodel") + ["linkmodel", "training_outputs/linkrun",
                                                                   "linkrun"]:
        body = {field: value}
        if path == "/chat":
            body["messages"] = [{"role": "user", "content": "Hallo"}]
        assert_refused(client.post(path, json=body), f"{path} {field}={value!r}")


def test_openai_model_names_are_confined(client, world):
    for value in attacks(world[1], "model", "models/linkmodel") + ["linkmodel", "linkrun", "models/linkmodel"]:
        chat = {"model": value, "messages": [{"role": "user", "content": "Hallo"}], "max_tokens": 1}
        assert_refused(client.post("/v1/chat/completions", json=chat), f"/v1/chat/completions model={value!r}")
        assert_refused(client.post("/v1/completions", json={"model": value, "prompt": "x", "max_tokens": 1}),
                       f"/v1/completions model={value!r}")
        assert_refused(client.get(f"/v1/models/{quote(value, safe='')}"), f"/v1/models/{value!r}")
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert "models/linkmodel" not in listed and "linkrun" not in listed


def test_no_static_mount_serves_run_folders_or_escapes_its_folder(client, world):
    home, _ = world
    outputs = (home / "training_outputs").resolve()
    for route in client.app.routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            folder = Path(route.app.directory).resolve()
            assert not (folder == outputs or folder.is_relative_to(outputs) or outputs.is_relative_to(folder)), \
                f"{route.path} serves run folders"
    for url in ("/training_outputs/linkrun/status.json", "/static/../training_outputs/linkrun/status.json",
                "/ui/..%2F..%2F..%2Foutside%2Fsecret.csv", "/ui/%2e%2e/%2e%2e/settings.py", "/outputs/linkrun"):
        assert_refused(client.get(url), url)


def test_links_out_of_home_are_never_listed(client):
    listings = {path: client.get(path) for path in ("/trainings", "/available_datasets", "/available_models",
                                                    "/v1/models")}
    for path, r in listings.items():
        assert r.status_code == 200 and SECRET not in r.text, path
        assert "linkrun" not in r.text and "linkmodel" not in r.text and "link.csv" not in r.text, path
