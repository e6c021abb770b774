"""GGUF files under models/ are listed and converted; bad input is a clear 4xx."""

from __future__ import annotations

import numpy as np


def _write_gguf(path, arch: str) -> None:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_files_are_listed(client, home):
    _write_gguf(home / "models" / "odd.gguf", "notanarch")
    listed = client.get("/models/gguf").json()
    assert [f["file"] for f in listed] == ["models/odd.gguf"] and listed[0]["size_bytes"] > 0


def test_an_unsupported_architecture_is_a_400_naming_it(client, home):
    _write_gguf(home / "models" / "odd.gguf", "notanarch")
    r = client.post("/models/import-gguf", json={"file": "models/odd.gguf", "name": "odd"})
    assert r.status_code == 400 and "'notanarch' is not supported" in r.json()["error"]["message"]
    assert r.json()["error"]["code"] == "unsupported_gguf"
    assert not (home / "models" / "odd").exists()


def test_paths_names_and_conflicts_are_checked(client, home):
    (home / "datasets" / "x.gguf").write_bytes(b"GGUF")
    (home / "models" / "taken").mkdir()
    _write_gguf(home / "models" / "a.gguf", "llama")
    cases = [({"file": "datasets/x.gguf", "name": "m"}, 400, "path_refused"),
             ({"file": "../../etc/passwd", "name": "m"}, 400, "path_refused"),
             ({"file": "models/missing.gguf", "name": "m"}, 404, "not_found"),
             ({"file": "models/a.gguf", "name": "../evil"}, 400, "invalid_name"),
             ({"file": "models/a.gguf", "name": "taken"}, 409, "model_exists")]
    for body, status, code in cases:
        r = client.post("/models/import-gguf", json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
