"""Model name resolution shared by training, dataset validation and inference."""

import pytest

from matelix.catalog import ModelNotFound, ModelRefused, resolve_model_ref
from matelix.paths import PathRefused
from matelix.training.preflight import RunRejected, resolve_model


@pytest.fixture
def lab(make_settings, home):
    for folder in (home / "models" / "tiny", home / "training_outputs" / "tiny_2026-01-01_00-00-00"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (home / "models" / "empty").mkdir()
    return make_settings(offline=True)


@pytest.mark.parametrize("ref, expected", [
    ("models/tiny", "models/tiny"), ("tiny", "models/tiny"), ("./models/tiny", "models/tiny"),
    ("tiny_2026-01-01_00-00-00", "training_outputs/tiny_2026-01-01_00-00-00"),
    ("training_outputs/tiny_2026-01-01_00-00-00", "training_outputs/tiny_2026-01-01_00-00-00"),
])
def test_names_resolve_to_the_same_folder_everywhere(lab, home, ref, expected):
    assert resolve_model_ref(ref, lab) == (home / expected).resolve()
    source, _ = resolve_model(ref, lab)
    assert source == str((home / expected).resolve())


@pytest.mark.parametrize("ref, error", [
    ("nope", ModelNotFound), ("models/nope", ModelNotFound), ("models/empty", ModelNotFound),
    ("../../etc", PathRefused), ("/etc", PathRefused), ("datasets", PathRefused), ("a\x00b", PathRefused),
    ("owner/model", ModelRefused),
])
def test_unknown_escaping_and_offline_hub_names_are_refused(lab, ref, error):
    with pytest.raises(error):
        resolve_model_ref(ref, lab)


def test_training_maps_refusals_to_404_and_400(lab):
    with pytest.raises(RunRejected) as missing:
        resolve_model("nope", lab)
    assert missing.value.kind == "not_found" and missing.value.code == "model_not_found"
    with pytest.raises(RunRejected) as escaping:
        resolve_model("../../etc", lab)
    assert escaping.value.kind == "invalid" and escaping.value.code == "path_refused"


def test_hub_ids_pass_when_online(make_settings):
    assert resolve_model_ref("owner/model", make_settings(offline=False)) == "owner/model"
    assert resolve_model("owner/model", make_settings(offline=False)) == ("owner/model", "model")
