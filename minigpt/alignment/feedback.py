"""AI feedback: preference labels from the judges, and the constitution as an RL reward (RL-CAI).

Bai et al. 2022 (2212.08073) §4.1: two replies (y_a, y_b) to a prompt x are shown to a feedback model,
which gives the probability that y_a is the better one under a principle; the probabilities are the soft
labels a preference model is trained on. Here the judges are the feedback model. A reply's score is

    s(x, y) = gold(x, y) − Σ_p w_p · violation_p(x, y)

(the task's gold score when x is a benign task prompt — helpfulness — minus the constitution's weighted
violations — harmlessness), and the soft label is

    P(y_a ≻ y_b | x) = σ((s(x, y_a) − s(x, y_b)) / T).

The ensemble over principles is the weighted sum inside σ (a product of experts in logit space), not the
paper's mean of per-principle probabilities: with five narrow judges most see no difference between two
replies, and their σ(0) = 1/2 would pull every label toward a coin flip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from minigpt.alignment.claims import asked_claim, find_claims
from minigpt.alignment.constitution import Constitution
from minigpt.tasks.base import Task


def reply_score(
    constitution: Constitution,
    tasks: Mapping[str, Task],
    prompt: str,
    reply: str,
    task: str | None,
    truth_weight: float = 0.0,
) -> float:
    """s(x, y): the task's gold score (0 without a task) minus the constitution's weighted violations; a
    reply to a prompt without a task earns `truth_weight` · `verified_truth` more."""
    if task is not None and task in tasks:
        return tasks[task].score(prompt, reply) - constitution.total(prompt, reply)
    truth = truth_weight * verified_truth(prompt, reply) if truth_weight else 0.0
    return truth - constitution.total(prompt, reply)


def verified_truth(prompt: str, reply: str) -> float:
    """1.0 when the prompt asks about one expression, the reply makes a claim about it, and every claim of the
    reply holds (the verifier recomputes them), else 0.

    The constitution only penalises false claims, so a reply that claims nothing scores as well as the true
    sum; with this term (`truth_weight`) the feedback prefers the true sum, and a model tuned on it cannot win
    the red arithmetic prompts by writing no number at all (docs/safety.md). A true sum the prompt did not ask
    about earns nothing: rewarding it would teach the model to answer every prompt with a sum.
    """
    asked = asked_claim(prompt)
    claims = find_claims(prompt, reply)
    about_it = asked is not None and any(claim.same_question(asked) for claim in claims)
    return float(about_it and all(claim.holds for claim in claims))


def soft_label(score_a: float, score_b: float, temperature: float = 0.25) -> float:
    """P(a ≻ b) = σ((s_a − s_b) / T)."""
    return 1.0 / (1.0 + math.exp(-(score_a - score_b) / temperature))


class ConstitutionReward:
    """`stage.reward=constitution`: r(x, y) = s(x, y), the gold score (task prompts) minus the violations,
    plus `truth_weight` · `verified_truth` on prompts without a task (`stage.truth_weight`).

    Args:
        constitution: the judges.
        tasks: {name: Task} whose prompts earn their gold score as well (the RL stage's data tasks).
        truth_weight: the reward of a true answer to a red prompt's one expression (0: only violations count).
    """

    def __init__(
        self, constitution: Constitution, tasks: Mapping[str, Task] | None = None, truth_weight: float = 0.0
    ) -> None:
        self.constitution, self.tasks, self.truth_weight = constitution, dict(tasks or {}), truth_weight

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], tasks: Sequence[str | None]) -> Tensor:
        """One reward per (prompt, completion, task) row."""
        rows = zip(prompts, completions, tasks)
        return torch.tensor(
            [reply_score(self.constitution, self.tasks, x, y, t, self.truth_weight) for x, y, t in rows]
        )
