"""The evaluation views in Chromium: a run's before/after table with its flips, the checkpoint timeline and
the eval-loss curve in the Runs view, the newest probe answers in the Monitor, and lm-eval started from the
dashboard with its result in the model comparison table."""

from __future__ import annotations

import pytest
from tests.conftest import LiveServer
from tests.export.conftest import finished_run

from matelix.evaluation.store import save_result
from matelix.settings import Settings
from matelix.training.evaluation import EvaluationReport, perplexity, summarize
from matelix.training.probes import Probe, score

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RUN = "tiny-demo_2026-01-01_00-00-00"
PROBES = [Probe(0, [{"role": "user", "content": "Wer bist du?"}], "Wer bist du?", expected="Mati"),
          Probe(1, [{"role": "user", "content": "Hauptstadt von Frankreich?"}], "Hauptstadt von Frankreich?",
                expected="Paris"),
          Probe(2, [{"role": "user", "content": "Sag etwas."}], "Sag etwas.")]
ANSWERS = {"base": ["Ich bin ein Modell.", "Paris.", "Hallo."],
           "checkpoint-2": ["Ich bin Ma...", "Paris!", "Hallo!"],
           "final": ["Ich bin Mati.", "Berlin.", "Hallo, Welt."]}


def write_report(rundir) -> None:
    report = EvaluationReport(rundir, PROBES, "probe_file", has_eval_loss=True)
    for label, step, loss in (("base", 0, 3.0), ("checkpoint-2", 2, 2.0), ("final", 4, 1.5)):
        answers = [{"probe": p.id, "text": text, **score(text, p)} for p, text in zip(PROBES, ANSWERS[label],
                                                                                       strict=True)]
        point = {"label": label, "step": step, "eval_loss": loss, "perplexity": perplexity(loss),
                 "probe_seconds": 0.5, "answers": answers}
        point["summary"] = summarize(point)
        report.add_loss(step, loss) if label != "base" else None
        report.add_time("probe_seconds", 0.5)
        report.add_point(point)


def test_runs_view_shows_flips_timeline_and_benchmarks_and_the_monitor_the_newest_answers(page, lab_home):
    from matelix.training.rundir import RunDir

    rundir: RunDir = finished_run(lab_home, RUN, lab_home / "models" / "tiny-demo", "full")
    rundir.write_config(rundir.read_config().model_copy(update={"eval_split": 0.25,
                                                                "probe_file": "datasets/probes.jsonl"}))
    write_report(rundir)
    settings = Settings(home=lab_home)
    save_result(settings, {"model": "models/tiny-demo", "backend": "hf", "tasks": ["matelix_general_en"],
                           "limit": 4, "results": {"matelix_general_en": {"acc": 0.5}},
                           "items": {"matelix_general_en": 4}, "seconds": 1.0, "finished_at": 1.0})
    with LiveServer(settings) as server:
        page.goto(server.url + "/#runs")
        page.click(f"tr[data-run='{RUN}']")
        page.wait_for_selector("#eval-table tbody tr")
        rows = page.query_selector_all("#eval-table tbody tr")
        assert [r.get_attribute("class") for r in rows] == ["flip-good", "flip-bad", ""]
        assert "wrong → right" in rows[0].text_content() and "Ich bin Mati." in rows[0].text_content()
        assert "right → wrong" in rows[1].text_content() and "Berlin." in rows[1].text_content()
        stats = page.text_content("#eval-stats")
        assert "3 → 1.5" in stats and "1 wrong → right, 1 right → wrong" in stats and "50 % → 50 %" in stats
        timeline = page.query_selector_all(".probe-timeline[data-probe='0'] li")
        assert [li.text_content().split(" ", 1)[0] for li in timeline] == ["Base", "Checkpoint", "Final"]
        assert "Ich bin Ma..." in timeline[1].text_content()
        assert page.get_attribute("#eval-chart", "data-axes") == "step / loss"

        # lm-eval from the dashboard: the run itself on the German task, two items, in-process.
        page.wait_for_selector("#bench-tasks input[value='matelix_general_de']")
        page.uncheck("#bench-tasks input[value='matelix_general_en']")
        page.fill("#bench-limit", "2")
        page.click("#bench-start")
        page.wait_for_function("document.querySelector('#bench-table').textContent.includes('matelix_general_de')",
                               timeout=300_000)
        header = [th.text_content() for th in page.query_selector_all("#bench-table thead th")]
        assert header == ["Model", "matelix_general_de", "matelix_general_en"]
        names = [th.text_content() for th in page.query_selector_all("#bench-table tbody th")]
        assert names == ["models/tiny-demo (base model)", f"training_outputs/{RUN} (this run)"]
        assert page.is_hidden("#bench-error")

        page.goto(server.url + "/#monitor")
        page.wait_for_selector("#mon-probes:not([hidden]) li")
        assert page.text_content("#mon-probes h2") == "Probe answers: Final model"
        assert "Ich bin Mati." in page.text_content("#mon-probes li[data-probe='0']")
        assert page.problems.errors == []
