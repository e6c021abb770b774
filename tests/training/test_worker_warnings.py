"""Library warnings of a run go to its `warnings.log`, not into `training.log`, the log its user reads."""

import logging
import warnings

from matelix.training.rundir import RunDir
from matelix.training.worker import WARNINGS_LOG, divert_library_warnings, divert_transformers_logging


def test_library_warnings_land_in_warnings_log_not_in_the_run_log(tmp_path, capsys, monkeypatch):
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    rundir = RunDir(tmp_path)
    divert_library_warnings(rundir)
    divert_transformers_logging(rundir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("`foo` is deprecated", FutureWarning, stacklevel=1)
        hf_logging.get_logger("transformers.modeling_utils").warning("some weights were not used")
    finally:
        root = hf_logging.get_logger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
        hf_logging.enable_default_handler()
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err and "weights were not used" not in captured.err
    text = (tmp_path / WARNINGS_LOG).read_text(encoding="utf-8")
    assert "FutureWarning: `foo` is deprecated" in text and "some weights were not used" in text
