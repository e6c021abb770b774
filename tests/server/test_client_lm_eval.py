"""lm-evaluation-harness's `local-completions` model against the lab's `/v1/completions` on the tiny model:
a local multiple-choice task (loglikelihood: `echo` + `logprobs`) and a `generate_until` task with five
stop strings. Only the protocol matters here: the random model's accuracy is whatever it is, but every
request must be answered in the shape lm-eval reads, and the scores must equal the model's own logprobs."""

from __future__ import annotations

import json
import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DEMO = "models/tiny-demo"
DOCS = [{"question": "Der Wal ist ein", "choices": [" Säugetier", " Fisch", " Vogel"], "answer": 0},
        {"question": "Ein Baum hat viele", "choices": [" Blätter", " Räder"], "answer": 0}]
UNTIL = ["\n\n", "Frage:", ".", "!", "?"]


def task_folder(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (tmp_path / "mc.yaml").write_text(
        "task: matelix_tiny_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: \"{{answer}}\"\nmetric_list:\n  - metric: acc\n",
        encoding="utf-8")
    (tmp_path / "gen.yaml").write_text(
        "task: matelix_tiny_gen\n" + common + "output_type: generate_until\ndoc_to_text: \"{{question}}\"\n"
        "doc_to_target: \"{{choices[answer]}}\"\ngeneration_kwargs:\n  until: " + json.dumps(UNTIL) + "\n"
        "  max_gen_toks: 8\n  do_sample: false\nmetric_list:\n  - metric: exact_match\n", encoding="utf-8")
    return tmp_path


def test_local_completions_runs_a_multiple_choice_and_a_generate_until_task(openai_server, tiny_model_dir,
                                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.settings.api_key)
    import lm_eval
    from lm_eval.tasks import TaskManager

    tasks = TaskManager(include_path=str(task_folder(tmp_path)), include_defaults=False)
    args = {"base_url": openai_server.url + "/v1/completions", "model": DEMO, "tokenizer": str(tiny_model_dir),
            "tokenizer_backend": "huggingface", "num_concurrent": 2, "max_retries": 1}
    out = lm_eval.simple_evaluate(model="local-completions", model_args=args, task_manager=tasks,
                                  tasks=["matelix_tiny_mc", "matelix_tiny_gen"], log_samples=True)
    assert 0.0 <= out["results"]["matelix_tiny_mc"]["acc,none"] <= 1.0
    assert "exact_match,none" in out["results"]["matelix_tiny_gen"]

    # The loglikelihoods lm-eval summed are the model's own.
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    for sample in out["samples"]["matelix_tiny_mc"]:
        for (text, continuation), (scored, _) in zip(sample["arguments"], [r[0] for r in sample["resps"]],
                                                     strict=True):
            context = tokenizer(text)["input_ids"]  # lm-eval's own split: context, then context + continuation
            whole = tokenizer(text + continuation)["input_ids"]
            with torch.no_grad():
                logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0], dim=-1)
            expected = sum(float(logprobs[i - 1, whole[i]]) for i in range(len(context), len(whole)))
            assert math.isclose(float(scored), expected, abs_tol=1e-3)
    for sample in out["samples"]["matelix_tiny_gen"]:
        answer = sample["resps"][0][0]
        assert not any(stop in answer for stop in UNTIL)
