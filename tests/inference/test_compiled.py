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

    eager, compiled = both(model, GenerationConfig(max_new_tokens=12, strategy="beam", num_beams=3))
    assert compiled.token_lists() == eager.token_lists()
    assert torch.allclose(compiled.scores, eager.scores, atol=1e-4)

    # The weights are inputs of the compiled step, not constants: after a training update the next
    # compiled generation follows the new weights.
    with torch.no_grad():
        model.lm_head.weight.mul_(-1.5)
    eager, compiled = both(model, GenerationConfig(max_new_tokens=30, strategy="greedy"))
    assert compiled.token_lists() == eager.token_lists()
