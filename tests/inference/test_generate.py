"""Batched generation: left padding, log-probs, seeding, stops, grouped samples, the context window."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.generate import Generation, GenerationConfig, generate
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError

PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7], [9, 3, 9, 3, 1]]


def recomputed_logprobs(model: torch.nn.Module, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """log p(tokens[i] | prompt + tokens[:i]) from one plain forward pass."""
    seq = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(seq)[0][0], dim=-1)
    positions = torch.arange(len(prompt) - 1, len(prompt) + len(tokens) - 1)
    return logp[positions, torch.tensor(tokens)]


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_left_padded_batch_equals_one_by_one(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    config = GenerationConfig(max_new_tokens=16, strategy="greedy")
    batch = generate(model, PROMPTS, config)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, [prompt], config)
        assert batch.token_lists()[i] == alone.token_lists()[0]
        torch.testing.assert_close(batch.logprobs[i], alone.logprobs[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_returned_logprobs_equal_a_recomputed_forward(tiny_model, family: str) -> None:
    model = tiny_model(family, init_std=0.3)
    config = GenerationConfig(max_new_tokens=12, temperature=0.7, top_k=20, stop_tokens=[3, 11])
    out = generate(model, PROMPTS, config, generator=torch.Generator().manual_seed(1))
    for prompt, tokens, row in zip(PROMPTS, out.token_lists(), out.logprobs):
        torch.testing.assert_close(row[: len(tokens)], recomputed_logprobs(model, prompt, tokens), atol=1e-5, rtol=0)
        assert (row[len(tokens) :] == 0).all()


def test_seeded_sampling_is_reproducible(tiny_model) -> None:
    model = tiny_model("llama")
    config = GenerationConfig(max_new_tokens=20, top_p=0.95)

    def run(seed: int) -> Generation:
        return generate(model, PROMPTS, config, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3).tokens, run(3).tokens)
    assert not torch.equal(run(3).tokens, run(4).tokens)


def test_stop_token_ends_its_row_only(tiny_model) -> None:
    model = tiny_model("gpt", init_std=0.3)
    free = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10, strategy="greedy")).token_lists()
    stop = free[0][3]  # the 4th token of row 0 becomes a stop token
    config = GenerationConfig(max_new_tokens=10, strategy="greedy", stop_tokens=[stop])
    out = generate(model, PROMPTS, config, pad_id=-1)
    assert out.lengths[0] == free[0].index(stop) + 1 and out.finish_reasons[0] == "stop"
    for free_row, row, length, reason, padded in zip(
        free, out.token_lists(), out.lengths, out.finish_reasons, out.tokens
    ):
        cut = free_row.index(stop) + 1 if stop in free_row else len(free_row)
        assert row == free_row[:cut] and length == cut
        assert reason == ("stop" if stop in free_row else "length")
        assert (padded[cut:] == -1).all()
    assert torch.equal(out.mask.sum(dim=1), out.lengths)


def test_stop_string_spanning_tokens(tiny_model) -> None:
    tokenizer = CharTokenizer.train("abcdefghij ")
    model = tiny_model("gpt", init_std=0.3, vocab_size=tokenizer.vocab_size)
    prompt = [tokenizer.encode("abc")]
    free = generate(model, prompt, GenerationConfig(max_new_tokens=12, strategy="greedy")).token_lists()[0]
    stop = tokenizer.decode(free[4:6])  # the text of two tokens
    cut = next(n for n in range(1, 13) if stop in tokenizer.decode(free[:n]))  # ≤ 6 tokens
    config = GenerationConfig(max_new_tokens=12, strategy="greedy", stop_strings=[stop])
    out = generate(model, prompt, config, tokenizer=tokenizer)
    assert out.token_lists()[0] == free[:cut] and out.finish_reasons == ["stop"]
    with pytest.raises(ConfigError, match="tokenizer"):
        generate(model, prompt, config)


def test_num_return_sequences_groups_samples_by_prompt(tiny_model) -> None:
    model = tiny_model("llama")
    sampled = generate(model, PROMPTS[:2], GenerationConfig(max_new_tokens=8, num_return_sequences=3))
    assert sampled.tokens.shape == (6, 8) and len(sampled.finish_reasons) == 6
    assert len({tuple(row) for row in sampled.token_lists()}) > 1
    greedy = generate(model, PROMPTS[:2], GenerationConfig(max_new_tokens=8, strategy="greedy", num_return_sequences=2))
    single = generate(model, PROMPTS[:2], GenerationConfig(max_new_tokens=8, strategy="greedy"))
    rows = greedy.token_lists()
    assert rows[0] == rows[1] == single.token_lists()[0] and rows[2] == rows[3] == single.token_lists()[1]


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_generation_continues_past_the_context_window(tiny_model, family: str) -> None:
    """block_size 16, prompt 10: 7 tokens fit; then the cache restarts from the last 8 tokens."""
    model = tiny_model(family, init_std=0.3, block_size=16)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    out = generate(model, [prompt], GenerationConfig(max_new_tokens=30, strategy="greedy")).token_lists()[0]
    assert len(out) == 30
    seq = prompt + out
    with torch.no_grad():
        for t in range(8):
            context = seq[: len(prompt) + t] if t < 7 else seq[len(prompt) + t - 8 : len(prompt) + t]
            assert int(model(torch.tensor([context]))[0][0, -1].argmax()) == out[t]


def test_generate_restores_training_mode(tiny_model) -> None:
    model = tiny_model("gpt").train()
    generate(model, [[1, 2]], GenerationConfig(max_new_tokens=2))
    assert model.training


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (dict(temperature=0.0), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(min_p=1.0), "min_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(strategy="nucleus"), "strategy"),
        (dict(strategy="beam", num_beams=2, num_return_sequences=3), "num_beams"),
        (dict(strategy="beam", repetition_penalty=1.2), "beam"),
    ],
)
def test_bad_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        GenerationConfig(**options)


def test_empty_prompt_is_refused(tiny_model) -> None:
    with pytest.raises(ValueError, match="at least one token"):
        generate(tiny_model("gpt"), [[1], []], GenerationConfig(max_new_tokens=2))


def test_outputs_are_ordinary_tensors(tiny_model) -> None:
    """Generation runs in inference mode, but what it returns can enter a training step (RL stages)."""
    model = tiny_model("gpt")
    out = generate(model, [[1, 2]], GenerationConfig(max_new_tokens=3))
    assert not (out.tokens.is_inference() or out.logprobs.is_inference() or out.lengths.is_inference())
    weight = torch.ones((), requires_grad=True)
    (out.logprobs * weight).sum().backward()
    assert weight.grad is not None
