"""Continuous batching: the same tokens as `generate` alone, rows reused, limits, cancellation."""

from __future__ import annotations

import threading

import pytest
import torch

from minigpt.inference.config import GenerationConfig
from minigpt.inference.continuous import ContinuousBatcher, QueueFull, Request
from minigpt.inference.generate import generate

GREEDY = dict(strategy="greedy", stop_tokens=[63])


def drain(engine: ContinuousBatcher) -> list[int]:
    """Step until no request is left; the batch size of each step."""
    sizes = []
    while engine.waiting or engine.running:
        engine.step()
        sizes.append(engine.batch_size)
    return sizes


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_requests_joining_and_leaving_get_the_tokens_of_generate_alone(tiny_model, family: str) -> None:
    model = tiny_model(family, block_size=32, init_std=0.3)
    # Different lengths and limits, more requests than rows: rows are freed and taken over mid-run; the
    # 40-token prompt and the 30 new tokens after a 7-token prompt overflow the 32-token context (shifts).
    prompts = [[1, 2, 3], [5] * 10, [7, 8, 9, 10, 11, 12, 13], [3] * 40, [4, 5], [9, 8, 7, 6]]
    limits = [10, 5, 30, 20, 12, 3]
    alone = [
        generate(model, [p], GenerationConfig(max_new_tokens=n, **GREEDY)).token_lists()[0]
        for p, n in zip(prompts, limits)
    ]
    engine = ContinuousBatcher(model, max_batch=3)
    requests = [
        engine.submit(Request(p, GenerationConfig(max_new_tokens=n, **GREEDY))) for p, n in zip(prompts, limits)
    ]
    sizes = drain(engine)
    assert [r.tokens for r in requests] == alone
    assert max(sizes) == 3 and len(sizes) < sum(limits) // 2  # the rows were shared, not one request at a time
    assert all(r.finish_reason in ("stop", "length") for r in requests)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_requests_arriving_together_are_prefilled_in_one_pass(tiny_model, family: str) -> None:
    model = tiny_model(family, block_size=16, init_std=0.3)
    # The 20-token prompt is longer than the context (its last 16 tokens are prefilled, then it shifts at
    # once, inside the next step's pass); 3 + 20 tokens shift later, beside rows that decode.
    prompts = [[1, 2, 3], [4] * 9, [5, 6], [7] * 20]
    limits = [20, 6, 12, 5]
    alone = [
        generate(model, [p], GenerationConfig(max_new_tokens=n, **GREEDY)).token_lists()[0]
        for p, n in zip(prompts, limits)
    ]
    passes: list[int] = []  # tokens of each forward pass of the model
    model.tok_emb.register_forward_hook(lambda module, args, out: passes.append(args[0].numel()))
    engine = ContinuousBatcher(model, max_batch=4)
    requests = [
        engine.submit(Request(p, GenerationConfig(max_new_tokens=n, **GREEDY))) for p, n in zip(prompts, limits)
    ]
    engine.step()
    assert passes == [3 + 9 + 2 + 16] and [len(r.tokens) for r in requests] == [1, 1, 1, 1]
    steps = 1 + len(drain(engine))
    assert len(passes) == steps  # every step, shifts included, is one forward pass
    assert [r.tokens for r in requests] == alone


def test_late_request_joins_a_running_batch(tiny_model) -> None:
    model = tiny_model("gpt", init_std=0.3)
    engine = ContinuousBatcher(model, max_batch=4)
    first = engine.submit(Request([1, 2, 3], GenerationConfig(max_new_tokens=12, strategy="greedy")))
    for _ in range(4):
        engine.step()
    late = engine.submit(Request([6, 5], GenerationConfig(max_new_tokens=6, strategy="greedy")))
    engine.step()
    assert engine.batch_size == 2 and len(first.tokens) == 5 and len(late.tokens) == 1  # one token a step
    drain(engine)
    for request in (first, late):
        config = GenerationConfig(max_new_tokens=request.config.max_new_tokens, strategy="greedy")
        assert request.tokens == generate(model, [request.prompt], config).token_lists()[0]


def test_seeded_sampling_matches_generate_with_the_same_seed(tiny_model) -> None:
    model = tiny_model("llama", init_std=0.3)
    config = GenerationConfig(max_new_tokens=15, strategy="sample", temperature=0.8, top_p=0.9)
    expected = generate(model, [[3, 4, 5]], config, generator=torch.Generator().manual_seed(7)).token_lists()[0]
    engine = ContinuousBatcher(model, max_batch=2)
    seeded = engine.submit(Request([3, 4, 5], config, torch.Generator().manual_seed(7)))
    engine.submit(Request([1, 1], config, torch.Generator().manual_seed(8)))  # a neighbour drawing its own
    drain(engine)
    assert seeded.tokens == expected


def test_cancelled_request_frees_its_row_for_the_next(tiny_model) -> None:
    engine = ContinuousBatcher(tiny_model("gpt"), max_batch=1)
    finished: list[str] = []
    long = engine.submit(
        Request([1], GenerationConfig(max_new_tokens=50, strategy="greedy"), on_finish=finished.append)
    )
    waiting = engine.submit(Request([2], GenerationConfig(max_new_tokens=3, strategy="greedy")))
    engine.step()
    engine.step()
    assert engine.batch_size == 1 and engine.queue_length == 1
    long.cancel()
    engine.step()
    assert finished == ["cancelled"] and len(long.tokens) == 2  # prefill, step; none after the cancel
    assert engine.running[0].request is waiting
    drain(engine)
    assert waiting.finish_reason == "length" and len(waiting.tokens) == 3


def test_queue_and_token_limits(tiny_model) -> None:
    engine = ContinuousBatcher(tiny_model("gpt"), max_batch=2, max_queue=1, max_total_tokens=20)
    config = GenerationConfig(max_new_tokens=8, strategy="greedy")
    with pytest.raises(ValueError, match="limit of 20"):
        engine.submit(Request([1] * 15, config))  # 15 + 8 tokens can never fit
    requests = [engine.submit(Request(prompt, config)) for prompt in ([1, 2], [1, 2, 3, 4], [3])]
    with pytest.raises(QueueFull):  # two rows and one waiting place are taken
        engine.submit(Request([3], config))
    engine.step()
    # 10 + 12 tokens > 20: the second waits although a row is free, and the third waits behind it (FIFO).
    assert engine.batch_size == 1 and engine.queue_length == 2
    drain(engine)
    assert [len(r.tokens) for r in requests] == [8, 8, 8]
    with pytest.raises(ValueError, match="one greedy or sampled"):
        engine.submit(Request([1], GenerationConfig(strategy="beam")))


def test_prefill_budget_spreads_newcomers_over_steps(tiny_model) -> None:
    steps: list[tuple[int, int]] = []
    engine = ContinuousBatcher(
        tiny_model("gpt"), max_batch=4, max_prefill_tokens=15, on_step=lambda *s: steps.append(s)
    )
    config = GenerationConfig(max_new_tokens=4, strategy="greedy")
    for _ in range(3):
        engine.submit(Request([1] * 10, config))
    engine.step()
    assert engine.batch_size == 1 and engine.queue_length == 2  # a second 10-token prompt would pass 15
    engine.step()
    assert engine.batch_size == 2 and steps == [(1, 1), (2, 2)]  # (rows in the pass, tokens made)


def test_engine_thread_serves_and_closes(tiny_model) -> None:
    engine = ContinuousBatcher(tiny_model("gpt"), max_batch=2).start()
    done = threading.Event()
    request = engine.submit(
        Request([1, 2], GenerationConfig(max_new_tokens=5, strategy="greedy"), on_finish=lambda r: done.set())
    )
    assert done.wait(30) and request.finish_reason == "length"
    stuck = engine.submit(Request([1], GenerationConfig(max_new_tokens=10_000, strategy="greedy")))
    engine.close()
    assert stuck.finish_reason == "cancelled"
