"""The lab's loss equals transformers' own causal-LM loss (value and gradients) without the full logits."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from matelix.training import chunked_loss
from matelix.training.chunked_loss import linear_cross_entropy, trained_positions
from matelix.training.trainer import _causal_lm


def _batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 24), generator=g)
    labels = ids.clone()
    labels[0, :10] = -100  # a prompt
    labels[1, 15:] = -100  # padding at the end
    return ids, labels


def test_linear_cross_entropy_matches_logits_and_softmax(monkeypatch):
    monkeypatch.setattr(chunked_loss, "CHUNK", 3)  # several chunks, the last one short
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(10, 8, generator=g, requires_grad=True)
    weight = torch.randn(50, 8, generator=g, requires_grad=True)
    targets = torch.randint(0, 50, (10,), generator=g)
    ours = linear_cross_entropy(hidden, weight, targets)
    ours.backward()
    gh, gw = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, reduction="sum")
    ref.backward()
    assert torch.allclose(ours, ref, atol=1e-4)
    assert torch.allclose(gh, hidden.grad, atol=1e-5) and torch.allclose(gw, weight.grad, atol=1e-5)


def test_trained_positions_shift_the_labels():
    labels = torch.tensor([[-100, -100, 7, 8, -100]])
    keep, targets = trained_positions(labels)
    assert keep.tolist() == [[False, True, True, False, False]]
    assert targets.tolist() == [7, 8]


def test_lab_loss_equals_the_models_own_loss_and_gradients(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids, labels = _batch(model.config.vocab_size)
    ref = model(input_ids=ids, labels=labels).loss
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    base = _causal_lm(model)
    keep, targets = trained_positions(labels)
    hidden = base.model(input_ids=ids).last_hidden_state
    ours = linear_cross_entropy(hidden[keep], base.get_output_embeddings().weight, targets) / targets.numel()
    ours.backward()
    assert torch.allclose(ours, ref, atol=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[name], atol=1e-5), name


def test_split_passes_give_the_gradients_of_the_whole_batch(tiny_model_dir, tmp_path):
    from transformers import TrainingArguments

    from matelix.training.trainer import LabTrainer

    grads = {}
    for per_pass in (None, 24):  # whole batch, then one row per pass
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                 per_device_train_batch_size=2)
        trainer = LabTrainer(model=model, args=args)
        trainer.tokens_per_pass = per_pass
        ids, labels = _batch(model.config.vocab_size)
        count = (labels[:, 1:] != -100).sum()
        loss = trainer.training_step(model, {"input_ids": ids, "labels": labels}, num_items_in_batch=count)
        grads[per_pass] = (float(loss), {n: p.grad.clone() for n, p in model.named_parameters()
                                         if p.grad is not None})
    (whole_loss, whole), (split_loss, split) = grads[None], grads[24]
    assert abs(whole_loss - split_loss) < 1e-5
    assert whole.keys() == split.keys()
    for name in whole:
        assert torch.allclose(whole[name], split[name], atol=1e-5), name


def test_the_warm_up_step_runs_in_the_passes_of_a_training_step_and_leaves_no_gradients(tiny_model_dir, tmp_path):
    from transformers import TrainingArguments

    from matelix.training.trainer import LabTrainer, measure_micro_step

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids, labels = _batch(model.config.vocab_size)
    rows = [{"input_ids": ids[i], "labels": labels[i]} for i in range(2)]
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             per_device_train_batch_size=2, train_sampling_strategy="sequential")
    trainer = LabTrainer(model=model, args=args, train_dataset=rows,
                         data_collator=lambda batch: {k: torch.stack([b[k] for b in batch]) for k in batch[0]})
    trainer.tokens_per_pass = 24  # one 24-token row per pass
    seen = []
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *args, **kwargs):
        seen.append((tuple(inputs["input_ids"].shape), kwargs.get("num_items_in_batch")))
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = recording
    assert measure_micro_step(trainer) > 0
    trained = int((labels[:, 1:] != -100).sum())
    assert seen == [((1, 24), trained), ((1, 24), trained)]  # never the whole batch at once
    assert all(p.grad is None for p in model.parameters())
    assert [p["input_ids"].shape[0] for p in trainer.passes({"input_ids": ids, "labels": labels})] == [1, 1]
    trainer.tokens_per_pass = None
    assert len(trainer.passes({"input_ids": ids, "labels": labels})) == 1


def test_the_free_heap_is_returned_after_every_pass_only_when_asked(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import TrainingArguments

    from matelix.training import trainer as trainer_module
    from matelix.training.trainer import LabTrainer

    calls = []
    monkeypatch.setattr(trainer_module, "release_free_heap", lambda: calls.append(1) or True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=2)
    trainer = LabTrainer(model=model, args=args)
    trainer.tokens_per_pass = 24  # two passes
    ids, labels = _batch(model.config.vocab_size)
    count = (labels[:, 1:] != -100).sum()
    trainer.training_step(model, {"input_ids": ids, "labels": labels}, num_items_in_batch=count)
    assert calls == []
    trainer.release_heap_between_passes = True
    trainer.training_step(model, {"input_ids": ids, "labels": labels}, num_items_in_batch=count)
    assert calls == [1, 1]


def test_releasing_the_free_heap_works_on_this_libc():
    from matelix.training.trainer import release_free_heap

    assert release_free_heap() is True  # glibc: malloc_trim found and called
