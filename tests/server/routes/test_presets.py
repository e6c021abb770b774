"""`/presets`: named settings saved on the server — list, read, create or replace, delete — checked like
/start, with the one error shape for bad names, bad values and missing presets."""


def test_a_preset_is_saved_listed_read_replaced_and_deleted(client, home):
    assert client.get("/presets").json() == []
    saved = client.post("/presets", json={"name": "LoRA quick", "config": {
        "train_mode": "lora", "learning_rate": 0.002, "model": "models/tiny-demo"}})
    assert saved.status_code == 201, saved.text
    # The accepted other name `model` is stored under the field's own name.
    assert saved.json() == {"name": "LoRA quick", "config": {
        "train_mode": "lora", "learning_rate": 0.002, "model_dir": "models/tiny-demo"}}
    assert (home / "presets" / "LoRA quick.json").is_file()
    assert [p["name"] for p in client.get("/presets").json()] == ["LoRA quick"]
    assert client.get("/presets/LoRA quick").json()["config"]["learning_rate"] == 0.002

    client.post("/presets", json={"name": "LoRA quick", "config": {"num_train_epochs": 1}})
    assert client.get("/presets/LoRA quick").json()["config"] == {"num_train_epochs": 1}

    assert client.delete("/presets/LoRA quick").json() == {"name": "LoRA quick", "deleted": True}
    assert client.get("/presets").json() == []
    gone = client.get("/presets/LoRA quick")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "preset_not_found"


def test_bad_values_names_and_unknown_fields_are_400_with_the_field_named(client, home):
    bad_value = client.post("/presets", json={"name": "x", "config": {"learning_rate": -1}})
    assert bad_value.status_code == 400
    assert "learning_rate" in bad_value.json()["error"]["message"]
    assert bad_value.json()["error"]["param"] == "config"

    unknown = client.post("/presets", json={"name": "x", "config": {"nope": 1}})
    assert unknown.status_code == 400 and "unknown field 'nope'" in unknown.json()["error"]["message"]

    for name in ("../etc", ".hidden", "", "a/b", "x" * 65):
        r = client.post("/presets", json={"name": name, "config": {}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "name", name
    assert client.delete("/presets/..%2Fetc").status_code in (400, 404)
    assert not (home / "presets").exists() or list((home / "presets").iterdir()) == []


def test_a_preset_never_carries_a_checkpoint_to_resume_from(client):
    saved = client.post("/presets", json={"name": "again", "config": {"resume_from": "run_x", "seed": 7}})
    assert saved.json()["config"] == {"seed": 7}


def test_a_hand_broken_preset_file_is_skipped_in_the_list(client, home):
    (home / "presets").mkdir()
    (home / "presets" / "broken.json").write_text("{not json", encoding="utf-8")
    client.post("/presets", json={"name": "fine", "config": {}})
    assert [p["name"] for p in client.get("/presets").json()] == ["fine"]
