"""`matelix export`: the parity line on success, exit 2 and the reason when the request is refused."""

from __future__ import annotations

import json

import pytest
from tests.export.conftest import FULL_RUN

from matelix.cli import main


def test_refused_export_exits_2_with_the_reason(export_lab, capsys):
    assert main(["export", "no-such-run", "--format", "hf", "--home", str(export_lab.home)]) == 2
    assert "error (404): no training run 'no-such-run'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_export_prints_its_record_and_parity(export_lab, capsys):
    code = main(["export", FULL_RUN, "--format", "hf", "--out", "exports-cli/hf", "--home", str(export_lab.home),
                 "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["path"] == "exports-cli/hf"
    assert record["parity"]["summary"] == "verified: 8/8 probes identical"
    assert (export_lab.home / "exports-cli" / "hf" / "model.safetensors").is_file()
