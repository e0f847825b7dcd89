"""The compiled decoding step (`GenerationConfig(compile=True)`) decodes exactly what the eager one does."""

from __future__ import annotations

import pytest
import torch

from minigpt.inference.generate import GenerationConfig, generate

# Compiling takes ~15 s per model and row count on 2 cores: one model per family serves every check.
pytestmark = pytest.mark.slow

PROMPTS = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15]]  # different lengths: left padding


def both(model: torch.nn.Module, config: GenerationConfig) -> tuple:
    """The same generation eager and compiled."""
    eager = generate(model, PROMPTS, config)
    compiled = generate(model, PROMPTS, GenerationConfig(**{**vars(config), "compile": True}))
    return eager, compiled


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_compiled_steps_decode_the_eager_tokens(tiny_model, family: str) -> None:
    # block_size 24 < prompt + 30 new tokens: the context shift (an eager prefill) happens mid-way.
    model = tiny_model(family, init_std=0.3, block_size=24)

    eager, compiled = both(model, GenerationConfig(max_new_tokens=30, strategy="greedy"))
    assert compiled.token_lists() == eager.token_lists()
    assert torch.allclose(compiled.logprobs, eager.logprobs, atol=1e-4)

    if family == "gpt":  # beams add graphs of their own (shared prefix), the same for both families' blocks
        eager, compiled = both(model, GenerationConfig(max_new_tokens=12, strategy="beam", num_beams=3))
        assert compiled.token_lists() == eager.token_lists()
        assert torch.allclose(compiled.scores, eager.scores, atol=1e-4)

    # The weights are inputs of the compiled step, not constants: after a training update the next
    # compiled generation follows the new weights.
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.5)
    eager, compiled = both(model, GenerationConfig(max_new_tokens=30, strategy="greedy"))
    assert compiled.token_lists() == eager.token_lists()


def test_a_changed_model_gets_a_newly_compiled_step(tiny_model) -> None:
    """Dynamo's checks of the model are off before each step; `compiled_decode_step` notices changes itself."""
    model = tiny_model("gpt", init_std=0.3)
    config = GenerationConfig(max_new_tokens=8, strategy="greedy")
    eager, compiled = both(model, config)
    assert compiled.token_lists() == eager.token_lists()

    # A grown vocabulary: new parameter objects of a new shape. Its new tokens are made to win the argmax,
    # which a step compiled for the old vocabulary could never pick.
    old = model.config.vocab_size
    model.resize_vocab(old + 3)
    with torch.no_grad():
        model.tok_emb.weight[old:] = 20 * torch.randn(3, model.config.n_embd)
    eager, compiled = both(model, config)
    assert compiled.token_lists() == eager.token_lists()
    assert any(token >= old for row in compiled.token_lists() for token in row)
