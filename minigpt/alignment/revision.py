"""The critique → revision loop of SL-CAI (Bai et al. 2022, 2212.08073 §3.1), with the judges as critic.

For each prompt x and the model's first reply y₀, round r = 1 … N:

1. the constitution scores y_{r−1}; if every judge is satisfied the loop stops for x;
2. the principle p with the worst (weighted) score is chosen and its critique template is filled in with
   the judge's evidence: c_r = critique_p(x, y_{r−1}) — the paper's "Critique Request" answered;
3. y_r = revise_p(x, y_{r−1}) by p's revision method — `best_of_k`: K fresh samples of the model,
   argmin_k Σ_p' w_p' · violation_p'(x, y^k) (the judges stand in for the paper's "Revision Request",
   which a tiny model cannot follow in words); `redact`: the judge's repair (the refusal sentence if it
   leaves nothing); `refuse`: the refusal sentence. A revision that scores no better than y_{r−1} is not
   taken (the loop never makes a reply worse).

Every step — prompt, round, principle, critique, reply, revision and both scores — is returned as a
`RevisionStep`, and the final y_N is what SFT trains on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from minigpt.alignment.constitution import Constitution

# (prompts, k) → k sampled replies per prompt, prompt-major.
Sampler = Callable[[Sequence[str], int], list[list[str]]]


@dataclass
class RevisionStep:
    """One critique–revision step of one prompt (a line of the run's `cai_sl/steps.jsonl`)."""

    prompt: str
    round: int
    principle: str
    critique: str
    reply: str
    violation: float
    revision: str
    revised_violation: float
    method: str
    accepted: bool
    scores: dict[str, float] = field(default_factory=dict)


def critique_and_revise(
    constitution: Constitution,
    prompts: Sequence[str],
    replies: Sequence[str],
    sampler: Sampler,
    rounds: int = 2,
    num_candidates: int = 8,
) -> tuple[list[str], list[RevisionStep]]:
    """Final revisions of `replies` to `prompts` after up to `rounds` critique–revision rounds, and every step."""
    current = list(replies)
    steps: list[RevisionStep] = []
    for round_number in range(1, rounds + 1):
        todo = []  # (index, principle, verdict) of the replies that still violate something
        for i, (prompt, reply) in enumerate(zip(prompts, current)):
            worst = constitution.worst(prompt, reply)
            if worst is not None:
                todo.append((i, *worst))
        if not todo:
            break
        sampled = [i for i, principle, _ in todo if principle.revision == "best_of_k"]
        candidates = dict(zip(sampled, sampler([prompts[i] for i in sampled], num_candidates))) if sampled else {}
        for i, principle, verdict in todo:
            prompt, reply = prompts[i], current[i]
            if principle.revision == "best_of_k":
                revision = min(candidates[i], key=lambda y: constitution.total(prompt, y))
            elif principle.revision == "redact":
                # A redaction that leaves nothing is a refusal: say so in words rather than train an empty reply.
                revision = principle.judge.repair(prompt, reply) or constitution.refusal
            else:
                revision = constitution.refusal
            before, after = constitution.total(prompt, reply), constitution.total(prompt, revision)
            steps.append(
                RevisionStep(
                    prompt, round_number, principle.name, principle.critique_of(prompt, reply, verdict), reply,
                    before, revision, after, principle.revision, after < before, constitution.scores(prompt, reply),
                )
            )  # fmt: skip
            if after < before:
                current[i] = revision
    return current, steps
