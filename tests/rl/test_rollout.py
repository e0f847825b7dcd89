"""The rollout layout: left-padded prompts + right-padded replies give each row what it gets alone."""

import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.rl.rollout import Rollout, frozen_logprobs, layout


def rollout_of(prompts: list[list[int]], replies: list[list[int]]) -> Rollout:
    out = layout(prompts, replies, pad_id=0)
    n = len(prompts)
    width, finished = max(len(p) for p in prompts), torch.ones(n, dtype=torch.bool)
    return Rollout([""] * n, [""] * n, [None] * n, out["input_ids"], out["positions"], out["attn_mask"],
                   width, out["response"], out["mask"], finished)  # fmt: skip


def test_layout_logprobs_equal_the_generators_for_both_families(tiny_model):
    prompts = [[5, 6, 7, 8, 9, 10], [11], [12, 13, 14]]
    for family in ("gpt", "llama"):
        model = tiny_model(family)
        gen = generate(model, prompts, GenerationConfig(max_new_tokens=7, stop_tokens=[3]),
                       generator=torch.Generator().manual_seed(1))  # fmt: skip
        rollout = rollout_of(prompts, gen.token_lists())
        logprobs = frozen_logprobs(model, rollout)
        width = rollout.response.shape[1]
        torch.testing.assert_close(logprobs, gen.logprobs[:, :width] * rollout.mask, atol=1e-5, rtol=0)


def test_select_keeps_rows_aligned_and_trims_padding(tiny_model):
    model = tiny_model()
    prompts, replies = [[5, 6], [7, 8, 9, 10], [11]], [[20, 21, 22, 23], [24], [25, 26]]
    rollout = rollout_of(prompts, replies)
    full = frozen_logprobs(model, rollout)
    sub = rollout.select(torch.tensor([2, 1]))
    assert sub.response.shape == (2, 2) and sub.mask.tolist() == [[True, True], [True, False]]
    torch.testing.assert_close(frozen_logprobs(model, sub), full[[2, 1], :2], atol=1e-6, rtol=0)
