"""Probes: reading a probe file, held-out samples as probes, scores, flips, and batched greedy answers."""

from __future__ import annotations

import json

import pytest

from matelix.data.samples import Sample
from matelix.training.evaluation import flips, perplexity, summarize
from matelix.training.probes import (
    Probe,
    ProbeFileError,
    generate_answers,
    probes_from_samples,
    prompt_ids,
    read_probe_file,
    score,
)


def write_lines(path, records) -> None:
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in records) + "\n")


def test_probe_file_takes_messages_or_prompt_and_stops_at_the_limit(tmp_path):
    path = tmp_path / "probes.jsonl"
    write_lines(path, [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name?"},
                      {"role": "assistant", "content": "I am Mati."}], "expected": "Mati"},
        {"prompt": "Capital of France?"},
        "",
        {"prompt": "Third"},
    ])
    probes = read_probe_file(path, limit=2)
    assert [p.id for p in probes] == [0, 1]
    first, second = probes
    assert first.prompt == "Name?" and first.reference == "I am Mati." and first.expected == "Mati"
    assert [m["role"] for m in first.messages] == ["system", "user"]  # the answer is not part of the prompt
    assert second.messages is None and second.prompt == "Capital of France?" and second.target is None


@pytest.mark.parametrize("line, words", [
    ("not json", "line 1: not JSON"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "no user message"),
    ('{"text": "x"}', "needs `messages`"),
    ("[1, 2]", "expected an object"),
])
def test_a_bad_probe_line_is_named(tmp_path, line, words):
    path = tmp_path / "probes.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ProbeFileError, match=words):
        read_probe_file(path, limit=5)


def test_held_out_chat_samples_become_probes_with_their_answer_as_reference():
    samples = [Sample(text="plain text"),
               Sample(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]),
               Sample(messages=[{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}])]
    probes = probes_from_samples(samples, limit=1)
    assert len(probes) == 1 and probes[0].prompt == "Hi" and probes[0].reference == "Hello!"
    assert probes[0].target == "Hello!"


def test_scores_fold_case_and_space_and_rouge_keeps_umlauts():
    probe = Probe(0, None, "Wer bist du?", expected="Mati", reference="Ich bin Mati aus München.")
    right = score("Ich  bin MATI aus München.", probe)
    assert right["contains"] and right["correct"] and not right["exact"]
    assert right["rouge_l"] == 1.0  # same words once case and spacing are folded
    wrong = score("Ich bin ein Modell aus Muenchen.", probe)
    assert not wrong["correct"] and 0 < wrong["rouge_l"] < 1
    exact = score(" mati ", Probe(1, None, "?", expected="Mati"))
    assert exact["exact"] and exact["contains"]
    assert score("anything", Probe(2, None, "?"))["correct"] is None


def test_flips_and_summary_compare_base_with_final():
    base = {"answers": [{"probe": 0, "correct": False, "exact": False, "rouge_l": 0.0},
                        {"probe": 1, "correct": True, "exact": True, "rouge_l": 1.0},
                        {"probe": 2, "correct": None, "exact": None, "rouge_l": None}]}
    final = {"answers": [{"probe": 0, "correct": True, "exact": False, "rouge_l": 0.5},
                         {"probe": 1, "correct": False, "exact": False, "rouge_l": 0.25},
                         {"probe": 2, "correct": None, "exact": None, "rouge_l": None}]}
    assert flips(base, final) == {"wrong_to_right": [0], "right_to_wrong": [1]}
    assert summarize(final) == {"scored": 2, "accuracy": 0.5, "exact": 0.0, "rouge_l": 0.375}
    assert perplexity(0.0) == 1.0 and perplexity(None) is None and perplexity(1e6) is None


def test_batched_answers_equal_one_by_one_and_restore_the_training_state(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.train()
    model.config.use_cache = False
    probes = [Probe(0, None, "Hallo"), Probe(1, None, "Wie geht es dir heute, mein Freund?")]
    prompts = [prompt_ids(tok, p, "chat") for p in probes]
    assert len(prompts[0]) != len(prompts[1])  # so the batch really is left-padded
    together = generate_answers(model, tok, prompts, max_new_tokens=6)
    alone = [generate_answers(model, tok, [p], max_new_tokens=6)[0] for p in prompts]
    assert together == alone and all(isinstance(t, str) for t in together)
    assert model.training and model.config.use_cache is False


def test_a_checkpoint_saved_for_a_stop_skips_the_probes(tmp_path):
    from types import SimpleNamespace

    from matelix.training.evaluation import EvaluationCallback, EvaluationReport
    from matelix.training.rundir import RunDir

    rundir = RunDir(tmp_path)
    probes = [Probe(0, None, "Hallo", expected="Hi")]
    lines = []
    callback = EvaluationCallback(EvaluationReport(rundir, probes, "probe_file", has_eval_loss=False), None,
                                  probes, [[1, 2]], max_new_tokens=4, is_main=True, log=lines.append)
    rundir.request_stop()
    callback.on_save(None, SimpleNamespace(global_step=7), None, model=object())
    assert callback.report.point("checkpoint-7") is None
    assert lines == ["[eval] checkpoint-7: probes skipped, a stop was requested"]
    rundir.clear_stop()
    callback.on_save(None, SimpleNamespace(global_step=8), None, model=object())  # not a model: fails, logged
    point = callback.report.point("checkpoint-8")
    assert point["answers"][0]["text"] is None and "probe generation failed" in lines[-2]


def test_without_a_chat_template_a_probe_is_its_plain_text(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    probe = Probe(0, [{"role": "user", "content": "Hallo Welt"}], "Hallo Welt")
    assert prompt_ids(tok, probe, "chat") == tok.encode("Hallo Welt", add_special_tokens=False)
