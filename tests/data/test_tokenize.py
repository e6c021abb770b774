"""Tokenization: labels only on trained spans, long samples cut without losing trained labels, ordering
and thread-safe splits."""

import pytest
from transformers import AutoTokenizer

from matelix.data import Sample, order_examples, split_by_group, tokenize_samples


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _chat(user: str, answer: str, group: str = "g", row: int = 1) -> Sample:
    return Sample(messages=[{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                  group=group, row=row)


def _trained_text(tok, ex) -> str:
    return tok.decode([i for i, lb in zip(ex["input_ids"], ex["labels"], strict=True) if lb != -100])


def test_labels_cover_only_the_answer_and_eos(tok):
    out = tokenize_samples([_chat("Hallo", "Hi, wie geht es?")], tok, template_mode="chat")
    ex = out.examples[0]
    assert tok.decode(ex["input_ids"]) == "<|Benutzer|>\nHallo\n<|Assistentin|>\nHi, wie geht es?\n</s>\n"
    assert _trained_text(tok, ex) == "Hi, wie geht es?\n</s>"
    assert ex["input_ids"] == tok.apply_chat_template(_chat("Hallo", "Hi, wie geht es?").messages, tokenize=True,
                                                      return_dict=True)["input_ids"]
    assert out.stats == {"samples": 1, "examples": 1, "cut": 0, "dropped": 0, "tokens": len(ex["input_ids"]),
                         "trained_tokens": sum(lb != -100 for lb in ex["labels"])}


def test_train_on_prompt_trains_every_token_but_the_first(tok):
    ex = tokenize_samples([_chat("Hallo", "Hi")], tok, template_mode="chat", train_on_prompt=True).examples[0]
    assert ex["labels"][0] == -100 and ex["labels"][1:] == ex["input_ids"][1:]


def test_long_history_is_truncated_from_the_left(tok):
    history = " ".join(["lange Vorgeschichte"] * 60)
    out = tokenize_samples([_chat(history, "Kurze Antwort.")], tok, template_mode="chat", chunk_size=32)
    assert out.stats["cut"] == 1 and out.stats["examples"] == 1
    ex = out.examples[0]
    assert len(ex["input_ids"]) == 32 and _trained_text(tok, ex) == "Kurze Antwort.\n</s>"


def test_a_long_answer_is_split_into_windows_that_all_train(tok):
    answer = " ".join(f"Satz {i} der langen Antwort." for i in range(40))
    out = tokenize_samples([_chat("Frage", answer)], tok, template_mode="chat", chunk_size=48)
    assert out.stats["cut"] == 1 and out.stats["examples"] > 2
    assert all(len(ex["input_ids"]) <= 48 for ex in out.examples)
    assert all(any(lb != -100 for lb in ex["labels"][1:]) for ex in out.examples)
    whole = tokenize_samples([_chat("Frage", answer)], tok, template_mode="chat", chunk_size=10_000)
    assert out.stats["trained_tokens"] == whole.stats["trained_tokens"]  # each answer token trained once


def test_column_text_windows_cover_the_text(tok):
    text = " ".join(["Wort"] * 200)
    out = tokenize_samples([Sample(text=text, group="r1", row=1)], tok, template_mode="column", chunk_size=50)
    assert out.stats["cut"] == 1
    n = len(tok.encode(text + "</s>", add_special_tokens=False))
    assert out.stats["trained_tokens"] == n - 1  # every token but the first is predicted exactly once
    assert out.examples[-1]["input_ids"][-1] == tok.eos_token_id


def test_a_sample_with_nothing_to_train_is_dropped_and_counted(tok):
    out = tokenize_samples([Sample(text="", group="r", row=1), _chat("a", "b")], tok, template_mode="chat")
    assert out.stats["dropped"] == 1 and out.stats["examples"] == 1 and out.rows == [1]


def test_order_examples_sorts_and_shuffles_reproducibly():
    examples = [{"input_ids": [0] * n, "labels": [0] * n} for n in range(1, 201)]
    by_length = order_examples(examples, sort_by_length=True, shuffle=False, seed=0)
    assert [len(e["input_ids"]) for e in by_length] == list(range(200, 0, -1))
    a = order_examples(examples, sort_by_length=False, shuffle=True, seed=1)
    assert a == order_examples(examples, sort_by_length=False, shuffle=True, seed=1) != examples
    both = [len(e["input_ids"]) for e in order_examples(examples, sort_by_length=True, shuffle=True, seed=1)]
    assert both[:64] == sorted(both[:64], reverse=True) and sorted(both) == list(range(1, 201))


def test_split_never_puts_a_thread_on_both_sides():
    samples = [_chat("u", "a", group=f"t{i % 17}", row=i) for i in range(200)]
    train, evals = split_by_group(samples, 0.2, seed=3)
    assert len(train) + len(evals) == 200 and evals
    assert not {s.group for s in train} & {s.group for s in evals}
    assert 0.1 < len(evals) / 200 < 0.35
    assert split_by_group(samples, 0.2, seed=3) == (train, evals)
    assert split_by_group(samples, 0.0, seed=3) == (samples, [])


def test_thread_samples_tokenize_exactly_like_their_full_rendered_text(tok):
    from matelix.data import load_dataset, render_sample
    from matelix.demo import demo_data_path

    samples = load_dataset(demo_data_path("demo_chat.csv")).samples
    out = tokenize_samples(samples, tok, template_mode="chat", chunk_size=100_000)
    assert out.stats["examples"] == len(samples)
    for sample, ex in zip(samples, out.examples, strict=True):
        text = render_sample(sample, tok, "chat")
        assert ex["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
        assert _trained_text(tok, ex) == sample.messages[-1]["content"] + "\n</s>"


def test_a_models_own_template_masks_everything_but_the_answer(tiny_model_dir):
    own = AutoTokenizer.from_pretrained(tiny_model_dir)
    own.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% if m['role'] == 'assistant' %}"
                         "{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    ex = tokenize_samples([_chat("Hallo", "Servus")], own, template_mode="chat").examples[0]
    assert own.decode(ex["input_ids"]) == "[user]Hallo[assistant]Servus</s>"
    assert _trained_text(own, ex) == "Servus</s>"
