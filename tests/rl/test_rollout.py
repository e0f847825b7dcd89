"""The rollout layout: left-padded prompts + right-padded replies give each row what it gets alone;
group sampling gives G contiguous replies per prompt whose log-probs equal a fresh forward of each row."""

import pytest
import torch

from minigpt.inference.generate import GenerationConfig, generate
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.rl.rollout import Rollout, chat_prompt_ids, frozen_logprobs, layout, sample_rollout, sample_rollouts
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens
from minigpt.utils.errors import ConfigError


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


def chat_policy(seed: int = 0) -> tuple[Transformer, CharTokenizer]:
    """A seeded random model over a char tokenizer that has the chat tokens."""
    tokenizer = CharTokenizer.train("abcd say:")
    add_chat_tokens(tokenizer)
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=48, vocab_size=tokenizer.vocab_size))
    return model.eval(), tokenizer


def test_group_sampling_gives_g_contiguous_replies_per_prompt_scored_as_a_fresh_forward():
    model, tokenizer = chat_policy()
    prompts, tasks, g = ["say: ab", "say: c", "say: dddd"], ["t1", None, "t3"], 4
    config = GenerationConfig(max_new_tokens=8, temperature=1.0)
    rollout = sample_rollout(model, tokenizer, prompts, None, config, tasks, torch.Generator().manual_seed(0), g)
    assert len(rollout) == 12 and rollout.group_size == g
    assert rollout.prompts == [p for p in prompts for _ in range(g)]
    assert rollout.tasks == [t for t in tasks for _ in range(g)]
    prompt_ids = chat_prompt_ids(tokenizer, prompts)
    groups = [rollout.completions[i * g : (i + 1) * g] for i in range(len(prompts))]
    assert any(len(set(group)) > 1 for group in groups)  # samples, not one reply copied G times
    frozen = frozen_logprobs(model, rollout)
    for row in range(len(rollout)):
        # Each row alone, without padding: prompt ids (left-padded in the rollout) + its reply tokens.
        ids = prompt_ids[row // g]
        width = rollout.prompt_width
        assert rollout.input_ids[row, width - len(ids) : width].tolist() == ids
        reply = rollout.response[row][rollout.mask[row]].tolist()
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids + reply]))
        fresh = torch.log_softmax(logits[0, len(ids) - 1 : -1].float(), dim=-1).gather(1, torch.tensor(reply)[:, None])
        n = len(reply)
        torch.testing.assert_close(frozen[row, :n], fresh[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(rollout.sampled_logprobs[row, :n], fresh[:, 0], atol=1e-5, rtol=0)
        assert not frozen[row, n:].any() and not rollout.sampled_logprobs[row, n:].any()  # 0 on padding
    assert len(rollout.select(torch.tensor([0, 5]))) == 2


def test_sample_rollouts_chunks_keep_prompt_major_order_and_cut_replies_to_the_context():
    model, tokenizer = chat_policy()
    prompts = ["say: a", "say: bb", "say: ccc", "say: dddd", "say: ab"]
    config = GenerationConfig(max_new_tokens=100, temperature=1.0)  # more than the 48-token context leaves
    generator = torch.Generator().manual_seed(0)
    rollouts = list(sample_rollouts(model, tokenizer, prompts, config, 2, generator, batch_size=2))
    assert [len(r) for r in rollouts] == [4, 4, 2]
    assert [p for r in rollouts for p in r.prompts] == [p for p in prompts for _ in range(2)]
    longest = max(len(ids) for ids in chat_prompt_ids(tokenizer, prompts[:2]))
    assert int(rollouts[0].mask.sum(dim=1).max()) <= model.config.block_size - longest


def test_num_generations_below_one_is_refused():
    model, tokenizer = chat_policy()
    with pytest.raises(ConfigError, match="num_generations=0"):
        sample_rollout(model, tokenizer, ["say: a"], None, GenerationConfig(max_new_tokens=2), num_generations=0)
