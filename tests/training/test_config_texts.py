"""Every TrainConfig field has a German help text, and the schema the dashboard reads carries it."""

from matelix.training.config import TrainConfig
from matelix.training.config_texts import GERMAN_DESCRIPTIONS


def test_every_field_has_a_german_text_in_the_schema():
    schema = TrainConfig.model_json_schema()
    properties = {**schema["properties"], **{f"ngrams.{name}": prop for name, prop
                                             in schema["$defs"]["NgramOptions"]["properties"].items()}}
    missing = [name for name, prop in properties.items() if not prop.get("x-description-de")]
    assert missing == []
    assert set(GERMAN_DESCRIPTIONS) <= set(properties)  # no text for a field that is gone


def test_the_served_schema_has_the_german_texts(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TrainConfig"]
    assert schema["properties"]["lora_r"]["x-description-de"].startswith("Rang der Adapter-Matrizen")
