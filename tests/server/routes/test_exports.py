"""Export routes: start an export in the background, follow it, list it, download it behind the API key."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from fastapi.testclient import TestClient
from tests.conftest import wait_for
from tests.export.conftest import ADAPTER_RUN, FULL_RUN, export_lab, one_thread  # noqa: F401 - fixtures

from matelix.server.app import create_app
from matelix.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
KEY = "export-test-key"


@pytest.fixture(scope="module")
def client(export_lab):  # noqa: F811 - the imported fixture
    settings = Settings(home=export_lab.home, api_key=KEY)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def finished_job(client, run_id: str) -> dict:
    def ended():
        job = client.get(f"/trainings/{run_id}/exports").json()["job"]
        return job if job and job["state"] != "running" else None

    return wait_for(ended, what=f"export of {run_id}", timeout=600)


def test_export_runs_in_the_background_and_is_listed_with_its_parity(client):
    started = client.post(f"/trainings/{ADAPTER_RUN}/export", json={"format": "gguf", "quant": "f16"})
    assert started.status_code == 202 and started.json()["state"] == "running"
    assert started.json()["name"] == "gguf-f16"
    job = finished_job(client, ADAPTER_RUN)
    assert job["state"] == "completed" and job["progress"] == 1.0, job
    assert job["parity"]["summary"] == "verified: 8/8 probes identical"
    listed = client.get(f"/trainings/{ADAPTER_RUN}/exports").json()["exports"]
    assert [e["name"] for e in listed] == ["gguf-f16"]
    assert listed[0]["parity"]["passed"] is True and listed[0]["size_bytes"] > 0


def test_download_streams_the_export_folder_as_tar_and_single_files(client):
    record = client.get(f"/trainings/{ADAPTER_RUN}/exports").json()["exports"][0]
    res = client.get(f"/trainings/{ADAPTER_RUN}/exports/gguf-f16/download")
    assert res.status_code == 200 and res.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(res.content)) as tar:
        names = {m.name.split("/", 1)[1]: m.size for m in tar.getmembers()}
        parity = json.loads(tar.extractfile(f"{ADAPTER_RUN}-gguf-f16/parity.json").read())
    assert names == {f["name"]: f["size_bytes"] for f in record["files"]} | {"export.json": names["export.json"]}
    assert parity["passed"] is True
    gguf_name = record["facts"]["gguf_file"]
    one = client.get(f"/trainings/{ADAPTER_RUN}/exports/gguf-f16/files/{gguf_name}")
    assert one.status_code == 200 and one.content[:4] == b"GGUF"


def test_downloads_need_the_api_key(client):
    bare = TestClient(client.app)
    res = bare.get(f"/trainings/{ADAPTER_RUN}/exports/gguf-f16/download")
    assert res.status_code == 401 and res.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("path, status, code", [
    (f"/trainings/{ADAPTER_RUN}/exports/hf/download", 404, "export_not_found"),
    (f"/trainings/{ADAPTER_RUN}/exports/gguf-f16/files/..%2Fexport.json", 404, None),
    (f"/trainings/{ADAPTER_RUN}/exports/gguf-f16/files/.hidden", 404, "file_not_found"),
    ("/trainings/nope/exports", 404, "run_not_found")])
def test_missing_exports_and_files_are_404(client, path, status, code):
    res = client.get(path)
    assert res.status_code == status and "error" in res.json()
    if code:
        assert res.json()["error"]["code"] == code


@pytest.mark.parametrize("body, status, param", [
    ({"format": "onnx"}, 422, "format"), ({"format": "hf", "quant": "f16"}, 400, "quant"),
    ({"format": "gguf", "quant": "q4"}, 422, "quant"), ({"format": "hf", "extra": 1}, 422, "extra")])
def test_bad_export_requests_are_4xx_in_the_error_shape(client, body, status, param):
    res = client.post(f"/trainings/{FULL_RUN}/export", json=body)
    assert res.status_code == status and res.json()["error"]["param"] == param


def test_an_adapter_export_of_a_full_run_is_refused_at_once(client):
    res = client.post(f"/trainings/{FULL_RUN}/export", json={"format": "adapter"})
    assert res.status_code == 422 and "no LoRA adapter" in res.json()["error"]["message"]
    assert client.get(f"/trainings/{FULL_RUN}/exports").json()["job"] is None
