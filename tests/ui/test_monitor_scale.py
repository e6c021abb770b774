"""The Monitor shows how a run is spread: processes over nodes and the sharding strategy, in English and
German."""

from __future__ import annotations

import pytest
from tests.conftest import LiveServer
from tests.export.conftest import finished_run

from matelix.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RUN = "tiny-demo_2026-01-02_00-00-00"


def stat(page, key: str) -> str:
    return page.text_content(f"#mon-stats dt[data-i18n='{key}'] + dd")


def test_the_monitor_shows_nodes_processes_and_strategy_in_both_languages(page, lab_home):
    rundir = finished_run(lab_home, RUN, lab_home / "models" / "tiny-demo", "full")
    rundir.write_config(rundir.read_config().model_copy(update={
        "nnodes": 2, "nproc": 2, "master_addr": "10.0.0.1", "device": "cuda", "distributed": "fsdp",
        "offload": True}))
    with LiveServer(Settings(home=lab_home)) as server:
        page.goto(server.url + "/#monitor")
        page.wait_for_selector("#mon-stats dt[data-i18n='monitor.strategy']")
        assert stat(page, "monitor.processes") == "4 (2 nodes × 2)"
        assert stat(page, "monitor.strategy") == "FSDP + CPU offload"
        page.select_option("#lang-select", "de")
        page.wait_for_function("document.querySelector(\"#mon-stats dt[data-i18n='monitor.strategy']\")"
                               ".textContent === 'Strategie'")
        assert stat(page, "monitor.processes") == "4 (2 Rechner × 2)"
        assert stat(page, "monitor.strategy") == "FSDP + CPU-Auslagerung"
        assert page.problems.errors == []
