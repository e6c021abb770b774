"""`/v1/models` through the official `openai` SDK: listing, retrieval, unknown ids, a wrong key."""

import openai
import pytest

DEMO = "models/tiny-demo"


def test_models_list_contains_the_demo_model(openai_client):
    models = openai_client.models.list()
    ids = [m.id for m in models.data]
    assert DEMO in ids
    demo = next(m for m in models.data if m.id == DEMO)
    assert demo.object == "model" and demo.owned_by and demo.created > 0


def test_model_ids_are_never_absolute_paths(openai_client, openai_server):
    home = str(openai_server.settings.home)
    for model in openai_client.models.list().data:
        assert not model.id.startswith("/") and home not in model.id


def test_finished_run_is_listed_by_run_id(openai_client, openai_server):
    run = openai_server.settings.outputs_dir / "tiny_2026-01-01_00-00-00"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert "tiny_2026-01-01_00-00-00" in [m.id for m in openai_client.models.list().data]


def test_models_retrieve_by_id_with_a_slash(openai_client):
    model = openai_client.models.retrieve(DEMO)
    assert model.id == DEMO and model.object == "model"


def test_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client.models.retrieve("no-such-model")
    assert exc.value.code == "model_not_found"


def test_wrong_key_is_an_authentication_error(openai_server):
    client = openai.OpenAI(base_url=openai_server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        client.models.list()
    assert exc.value.code == "invalid_api_key"
    assert exc.value.body["type"] == "invalid_request_error"


def test_a_running_runs_latest_checkpoint_is_listed_and_served_as_an_adapter(openai_client, openai_server,
                                                                              tiny_model_dir):
    import json

    from tests.conftest import save_tiny_adapter

    run = openai_server.settings.outputs_dir / "live_2026-01-01_00-00-00"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "running"}))
    save_tiny_adapter(run / "checkpoint-2", tiny_model_dir, seed=3)
    (run / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    save_tiny_adapter(run / "checkpoint-4", tiny_model_dir, seed=4)  # no trainer_state.json yet: being written

    cards = {m.id: m.to_dict() for m in openai_client.models.list().data}
    latest = cards["live_2026-01-01_00-00-00@latest"]
    assert latest["checkpoint_step"] == 2 and latest["served_as"] == "adapter" and latest["resident"] is False
    assert "live_2026-01-01_00-00-00@checkpoint-4" not in cards
    answer = openai_client.chat.completions.create(model="live_2026-01-01_00-00-00@latest", max_tokens=3,
                                                   messages=[{"role": "user", "content": "Hallo"}])
    assert answer.model == "live_2026-01-01_00-00-00@latest" and answer.usage.completion_tokens > 0
    served = openai_client.models.retrieve("live_2026-01-01_00-00-00@checkpoint-2").to_dict()
    assert served["resident"] is True and served["served_as"] == "adapter"
    assert served["base_model"] == DEMO


def test_a_loaded_model_is_answered_without_scanning_the_disk(openai_client, monkeypatch):
    from matelix import catalog

    openai_client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "Hallo"}], max_tokens=2)
    scans = []
    list_models = catalog.list_models
    monkeypatch.setattr(catalog, "list_models", lambda settings: scans.append(1) or list_models(settings))
    reply = openai_client.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "Hallo"}],
                                                  max_tokens=2)
    assert reply.choices[0].message.content is not None and scans == []  # resident: no listing of every model
    with pytest.raises(openai.NotFoundError) as exc:
        openai_client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.code == "model_not_found" and scans  # unknown ids are still checked against the disk
