"""`Task`: a small problem family with deterministic examples, disjoint splits and a gold scorer.

Every later stage is measured on tasks: SFT trains on their examples, the reward model and DPO label
preferences with their scorer, PPO/GRPO/ReST use `score(prompt, completion)` as a verifiable reward, and
evaluation reports the mean score on the test split. So a task must be reproducible and honest:

* **Deterministic.** `examples(split, n)` is a pure function of (task options, seed, split, n).
* **Disjoint splits.** A prompt's split is decided by a hash of the prompt text itself, not by the order
  of generation, so no test prompt can ever appear in training, whatever seed or `n` is asked for.
* **Gold scorer from the prompt alone.** `score` needs only the prompt and the model's completion (no
  stored answer key), which is exactly what an RL reward function receives.
"""

from __future__ import annotations

import hashlib
import logging
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from minigpt.utils.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}

_REGISTRY: dict[str, type[Task]] = {}


@dataclass(frozen=True)
class Example:
    """One task instance: the user's prompt and a gold (reference) answer."""

    prompt: str
    answer: str

    def messages(self) -> list[dict[str, str]]:
        """The chat form: one user turn, one assistant turn."""
        return [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.answer}]


def split_of(name: str, prompt: str) -> str:
    """The split a prompt belongs to, from a stable hash of (task name, prompt) mapped into [0, 1)."""
    digest = hashlib.sha256(f"{name}\0{prompt}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return next(split for split, (lo, hi) in SPLITS.items() if lo <= u < hi)


class Task(ABC):
    """Base class of tasks; subclasses set `name` (the registry key) and implement `generate` and `score`.

    Args:
        seed: seeds example generation; each split draws from its own stream.
    """

    name: ClassVar[str]
    # A task whose splits hold few distinct prompts by design (held-out templates, a fixed set of functions)
    # returns all it has, with a warning, when asked for more; the others refuse.
    finite: ClassVar[bool] = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    @abstractmethod
    def generate(self, rng: random.Random) -> Example:
        """Draw one random example (of any split) from `rng`."""

    @abstractmethod
    def score(self, prompt: str, completion: str) -> float:
        """Gold score in [0, 1] of `completion` as the answer to `prompt` (1.0 = a correct answer)."""

    def examples(self, split: str, n: int) -> list[Example]:
        """`n` distinct examples of `split`, the same list every call (rejection-sampled by prompt hash)."""
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is unknown; use one of {list(SPLITS)}.")
        rng = random.Random(f"{self.name}/{self.seed}/{split}")
        seen: set[str] = set()
        out: list[Example] = []
        for _ in range(50 * n + 1000):
            if len(out) == n:
                return out
            example = self.generate(rng)
            if example.prompt not in seen and self.split_of(example.prompt) == split:
                seen.add(example.prompt)
                out.append(example)
        if len(out) == n:
            return out
        if self.finite:
            log.warning(
                "Task %s has %d distinct %s prompts, fewer than the %d asked for: using all.",
                self.name,
                len(out),
                split,
                n,
            )
            return out
        raise ConfigError(
            f"Task {self.name!r} found only {len(out)} distinct {split} prompts, fewer than the {n} asked "
            "for; ask for fewer examples or widen the task (e.g. more digits or longer strings)."
        )

    def split_of(self, prompt: str) -> str:
        """The split `prompt` belongs to: a hash of the prompt (a task may split coarser, e.g. by template)."""
        return split_of(self.name, prompt)

    def is_exact(self, prompt: str, completion: str) -> bool:
        """Whether the completion earns the full score."""
        return self.score(prompt, completion) >= 1.0


def get_task(name: str, **options: Any) -> Task:
    """Build a registered task by name, e.g. `get_task("arithmetic", max_digits=3)`."""
    import minigpt.code.all_tasks  # noqa: F401  (registers the code tasks)
    import minigpt.tasks  # noqa: F401  (registers every task)

    if name not in _REGISTRY:
        raise ConfigError(f"Unknown task {name!r}; known tasks are {sorted(_REGISTRY)}.")
    return _REGISTRY[name](**options)


def task_names() -> list[str]:
    """Names of all registered tasks."""
    import minigpt.code.all_tasks  # noqa: F401
    import minigpt.tasks  # noqa: F401

    return sorted(_REGISTRY)
