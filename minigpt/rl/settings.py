"""`RolloutSettings`: how an RL stage samples its replies — the sampling keys PPO and GRPO share."""

from __future__ import annotations

from dataclasses import dataclass

from minigpt.inference.config import GenerationConfig


@dataclass
class RolloutSettings:
    """The `stage.*` sampling options of an RL stage (conf/stage/ppo.yaml, grpo.yaml); stages extend it."""

    max_new_tokens: int = 24  # longest sampled reply
    temperature: float = 1.0  # policy-gradient ratios assume the replies were sampled from the policy itself
    top_k: int | None = None
    top_p: float | None = None
    compile_rollouts: bool = False  # sample through compiled decoding steps (minigpt.inference.compiled)

    def generation(self) -> GenerationConfig:
        """How rollouts sample."""
        shared = ("max_new_tokens", "temperature", "top_k", "top_p")  # the same names in GenerationConfig
        return GenerationConfig(compile=self.compile_rollouts, **{name: getattr(self, name) for name in shared})
