"""`gold_eval`: gold score of sampled replies and their KL to a reference, through the rollout path."""

from functools import partial

import torch

from minigpt.evaluation.gold import gold_eval
from minigpt.inference.config import GenerationConfig
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.rl.rollout import frozen_logprobs, sample_rollouts
from minigpt.tasks.base import Example, Task
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import add_chat_tokens


class CountA(Task):
    """Gold score = the number of `a` in the reply (kept out of the registry: name set per instance)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.name = "count_a"

    def generate(self, rng) -> Example:
        return Example("say: a", "a")

    def score(self, prompt: str, completion: str) -> float:
        return float(completion.count("a"))


def models() -> tuple[Transformer, Transformer, CharTokenizer]:
    tokenizer = CharTokenizer.train("abcd say:")
    add_chat_tokens(tokenizer)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=tokenizer.vocab_size)
    torch.manual_seed(0)
    policy = Transformer(config)
    torch.manual_seed(1)
    return policy, Transformer(config), tokenizer


def test_kl_to_itself_is_zero_and_to_another_model_is_positive():
    policy, other, tokenizer = models()
    prompts = ["say: ab", "say: cd", "say: a"]
    same = gold_eval(policy, tokenizer, CountA(), prompts, partial(frozen_logprobs, policy), num_samples=8,
                     max_new_tokens=6)  # fmt: skip
    assert abs(same["kl"]) < 1e-4
    far = gold_eval(policy, tokenizer, CountA(), prompts, partial(frozen_logprobs, other), num_samples=8,
                    max_new_tokens=6)  # fmt: skip
    assert far["score"] == same["score"]  # same seed, same samples
    assert far["kl"] > 0.1


def test_score_is_the_mean_gold_score_of_the_seeded_samples():
    policy, _, tokenizer = models()
    prompts = ["say: a", "say: b", "say: c"]
    result = gold_eval(policy, tokenizer, CountA(), prompts, num_samples=4, max_new_tokens=6, seed=3)
    config = GenerationConfig(max_new_tokens=6, temperature=1.0)
    rollouts = sample_rollouts(policy, tokenizer, prompts, config, 4, torch.Generator().manual_seed(3))
    counts = [reply.count("a") for rollout in rollouts for reply in rollout.completions]
    assert "kl" not in result and len(counts) == 12 and result["score"] == sum(counts) / 12
