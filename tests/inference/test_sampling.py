"""Sampling parameters and per-row sampling: validation, warpers, penalties, seeds."""

from __future__ import annotations

import pytest
import torch

from matelix.inference.sampling import (
    SEED_MAX,
    SEED_MIN,
    InvalidSamplingParams,
    RowSampler,
    SamplingParams,
    sample_rows,
)


@pytest.mark.parametrize(("field", "value"), [
    ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("min_p", 1.5),
    ("repetition_penalty", 0.0), ("presence_penalty", 2.5), ("frequency_penalty", -3.0),
    ("max_new_tokens", 0), ("max_new_tokens", True), ("seed", "7"), ("stop", ("",)),
    ("stop", ("x" * 257,)), ("temperature", float("nan")),
    ("seed", SEED_MAX + 1), ("seed", SEED_MIN - 1), ("seed", 2**100),
])
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(InvalidSamplingParams) as err:
        SamplingParams(**{field: value}).validate()
    assert err.value.param == field


def draws(logits: list[float], n: int = 300, **kw) -> set[int]:
    sampler = RowSampler(SamplingParams(seed=0, **kw), [], len(logits), torch.device("cpu"))
    return {sampler.sample(torch.tensor(logits)) for _ in range(n)}


def test_top_k_top_p_and_min_p_restrict_the_candidates():
    logits = [4.0, 3.9, 3.8, 0.0, -1.0, -2.0]
    assert draws(logits, top_k=2) <= {0, 1}
    assert draws(logits, top_p=0.5) <= {0, 1}
    assert draws(logits, min_p=0.5) <= {0, 1, 2}
    assert len(draws(logits, temperature=5.0)) > 3


def test_repetition_penalty_matches_transformers():
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    logits = torch.tensor([1.0, -2.0, 3.0, 0.5, -0.5])
    prompt = [1, 2]
    ours = RowSampler(SamplingParams(temperature=0, repetition_penalty=1.5), prompt, 5, torch.device("cpu"))
    expected = RepetitionPenaltyLogitsProcessor(1.5)(torch.tensor([prompt]), logits.clone()[None])[0]
    assert torch.allclose(ours.process(logits.clone()), expected)


def test_presence_and_frequency_penalties_count_generated_tokens():
    sampler = RowSampler(SamplingParams(temperature=0, presence_penalty=1.0, frequency_penalty=0.5), [0], 3,
                         torch.device("cpu"))
    for token in (2, 2, 1):
        sampler.observe(token)
    out = sampler.process(torch.zeros(3))
    assert out.tolist() == [0.0, -1.5, -2.0]


def test_greedy_rows_take_the_argmax_and_seeded_rows_repeat():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")

    def batch():
        return [RowSampler(SamplingParams(temperature=0), [], 50, cpu),
                RowSampler(SamplingParams(temperature=1.0, seed=3), [], 50, cpu),
                RowSampler(SamplingParams(temperature=1.0, seed=3), [], 50, cpu)]

    first = sample_rows(logits.clone(), batch())
    assert first[0] == int(logits[0].argmax())
    assert sample_rows(logits.clone(), batch()) == first


def test_choices_get_consecutive_seeds():
    params = SamplingParams(seed=10)
    assert [params.for_choice(i).seed for i in range(3)] == [10, 11, 12]
    assert SamplingParams().for_choice(2).seed is None


@pytest.mark.parametrize("seed", [SEED_MIN, -1, 0, SEED_MAX])
def test_every_seed_in_range_seeds_a_generator_and_its_choices(seed):
    params = SamplingParams(seed=seed, max_new_tokens=1).validate()
    for index in range(4):
        choice = params.for_choice(index).validate()
        RowSampler(choice, [], 8, torch.device("cpu")).sample(torch.zeros(8))  # manual_seed accepts it


def test_choice_seeds_wrap_like_the_generator_does():
    assert SamplingParams(seed=SEED_MAX).for_choice(1).seed == 0
    assert SamplingParams(seed=-5).for_choice(1).seed == SEED_MAX - 3  # the generator reads -4 as 2**64 - 4
    draw = [RowSampler(SamplingParams(seed=s), [], 50, torch.device("cpu")).sample(torch.zeros(50))
            for s in (-4, SEED_MAX - 3)]
    assert draw[0] == draw[1]


def test_temperatures_close_to_zero_are_greedy():
    params = SamplingParams(temperature=1e-300, seed=1)
    assert params.greedy
    assert RowSampler(params, [], 3, torch.device("cpu")).sample(torch.tensor([0.0, 2.0, 1.0])) == 1


def test_overflowing_penalties_sample_among_the_largest_logits():
    """A repetition penalty close to 0 divides seen tokens' positive logits to inf: those tokens share the
    probability instead of the draw failing on a NaN distribution."""
    sampler = RowSampler(SamplingParams(repetition_penalty=1e-300, seed=0), [1, 3], 5, torch.device("cpu"))
    drawn = {sampler.sample(torch.tensor([0.5, 1.0, 3.0, 2.0, 0.0])) for _ in range(50)}
    assert drawn == {1, 3}
