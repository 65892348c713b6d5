"""The step plan: random steps like a plain trainer, little padding inside each step."""

from __future__ import annotations

import itertools
import random

from core.training.data import PASS_COST, micro_batches, step_plan


def padded_cost(runs: list[list[int]], lengths: list[int]) -> int:
    return sum(PASS_COST + len(run) * max(lengths[i] for i in run) for run in runs)


def test_every_epoch_uses_each_example_once_in_small_enough_micro_batches():
    lengths = [random.Random(1).randint(5, 300) for _ in range(37)]
    plan = step_plan(lengths, batch_size=4, grad_accumulation=2, epochs=2, total_steps=10, seed=3)
    assert len(plan) == 10
    first_epoch = [i for step in plan[:5] for run in step for i in run]
    assert sorted(first_epoch) == list(range(37))
    assert all(1 <= len(run) <= 4 for step in plan for run in step)
    assert [sum(map(len, step)) for step in plan[:5]] == [8, 8, 8, 8, 5]
    assert plan == step_plan(lengths, batch_size=4, grad_accumulation=2, epochs=2,
                             total_steps=10, seed=3)  # the same plan on resume
    assert plan != step_plan(lengths, batch_size=4, grad_accumulation=2, epochs=2,
                             total_steps=10, seed=4)


def test_steps_mix_lengths_while_micro_batches_do_not():
    lengths = [10] * 200 + [500] * 200
    plan = step_plan(lengths, batch_size=4, grad_accumulation=1, epochs=1, total_steps=100,
                     seed=0)
    mixed_steps = sum(len({lengths[i] for run in step for i in run}) == 2 for step in plan)
    assert mixed_steps > 70  # random steps of 4 mix both lengths 7 times in 8
    assert all(len({lengths[i] for i in run}) == 1 for step in plan for run in step)


def every_cut(ordered: list[int], max_rows: int):
    """Every split of `ordered` into consecutive runs of at most max_rows (brute force)."""
    for k in range(len(ordered)):
        for cuts in itertools.combinations(range(1, len(ordered)), k):
            bounds = list(zip((0, *cuts), (*cuts, len(ordered)), strict=True))
            if all(end - start <= max_rows for start, end in bounds):
                yield [ordered[start:end] for start, end in bounds]


def test_micro_batches_are_the_cheapest_cut_of_the_sorted_step():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 400) for _ in range(rng.randint(1, 8))]
        max_rows = rng.randint(1, 4)
        runs = micro_batches(list(range(len(lengths))), lengths, max_rows)
        ordered = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        best = min(padded_cost(cut, lengths) for cut in every_cut(ordered, max_rows))
        assert padded_cost(runs, lengths) == best
        assert sorted(i for run in runs for i in run) == list(range(len(lengths)))
