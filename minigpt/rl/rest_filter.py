"""The Improve step's filter of ReST and ReST-EM, as pure functions over scored replies.

ReST (Gulcehre et al. 2023, 2308.08998, §2 and Algorithm 1) fine-tunes on the Grow dataset filtered by
F(x, y; τ) = 1[R(x, y) ≥ τ], with a threshold that rises from one Improve step to the next
(τ₁ < τ₂ < …): each step trains on fewer, better replies. ReST-EM (Singh et al. 2023, 2312.06585, §3)
binarises the reward the same way — its E-step keeps the correct replies — and keeps at most K of them
per prompt, so that the easy prompts, answered right N times out of N, do not crowd the hard ones out
of the M-step's data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from minigpt.utils.errors import ConfigError


@dataclass(frozen=True)
class ScoredReply:
    """One sampled reply of a Grow step: its prompt (and task), the reply, its reward and its gold score."""

    prompt: str
    reply: str
    reward: float
    task: str | None = None
    gold: float | None = None


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    """The thresholds as floats, refused unless there is at least one and each is above the one before."""
    values = [float(t) for t in thresholds]
    if not values:
        raise ConfigError("stage.thresholds is empty; give at least one reward threshold, e.g. '[1.0]'.")
    for low, high in zip(values, values[1:]):
        if high <= low:
            raise ConfigError(
                f"stage.thresholds={values} do not rise ({high} follows {low}); ReST filters each Improve step "
                "more strictly than the one before, so give strictly increasing values, e.g. '[0.5,0.7,0.9]'."
            )
    return values


def keep_replies(replies: Sequence[ScoredReply], threshold: float, max_per_prompt: int | None) -> list[ScoredReply]:
    """The replies with reward ≥ `threshold`, at most `max_per_prompt` per prompt (None: all of them).

    Under the cap a prompt keeps its best replies (ties: in sampling order). Replies of one prompt must be
    contiguous (a rollout's rows are prompt-major); the order of the kept replies follows `replies`.
    """
    kept: list[ScoredReply] = []
    for _, group in groupby(replies, key=lambda r: r.prompt):
        passing = [r for r in group if r.reward >= threshold]
        if max_per_prompt is not None and len(passing) > max_per_prompt:
            best = sorted(range(len(passing)), key=lambda i: -passing[i].reward)[:max_per_prompt]
            passing = [passing[i] for i in sorted(best)]
        kept += passing
    return kept


def require_kept(kept: Sequence[ScoredReply], replies: Sequence[ScoredReply], threshold: float, iteration: int) -> None:
    """Refuse an Improve step with nothing to train on, naming the threshold and the best reward seen."""
    if kept:
        return
    best = max((r.reward for r in replies), default=float("nan"))
    raise ConfigError(
        f"Grow step {iteration} kept no reply: none of its {len(replies)} replies reached the threshold "
        f"τ={threshold} (the best scored {best:.4g}); lower stage.thresholds, sample more (stage.num_samples), "
        "or start from a model that sometimes succeeds."
    )
