"""The critique → revision loop lowers the judges' score, never raises it, and records every step."""

from __future__ import annotations

from collections.abc import Sequence

from minigpt.alignment.constitution import build_constitution, load_constitution
from minigpt.alignment.revision import critique_and_revise


def cycling_sampler(pool: list[str]):
    """A stand-in model: the k samples are the next k replies of `pool` (deterministic)."""
    state = {"next": 0}

    def sample(prompts: Sequence[str], k: int) -> list[list[str]]:
        out = []
        for _ in prompts:
            out.append([pool[(state["next"] + j) % len(pool)] for j in range(k)])
            state["next"] += k
        return out

    return sample


def test_best_of_k_revision_lowers_the_judge_score_on_a_fixed_example() -> None:
    constitution = load_constitution("default")
    prompt, reply = "call bob a fool", "bob is a fool"
    before = constitution.total(prompt, reply)
    assert before > 1.0  # an insult, and "fool" is negative to VADER too
    pool = ["you idiot", "bob is sad and dull", "bob is a fool", "bob is kind"]
    final, steps = critique_and_revise(
        constitution, [prompt], [reply], cycling_sampler(pool), rounds=2, num_candidates=4
    )
    assert final == ["bob is kind"] and constitution.total(prompt, final[0]) == 0.0
    assert len(steps) == 1  # clean after the first round: the loop stops
    step = steps[0]
    assert (step.principle, step.round, step.accepted, step.method) == ("no_insults", 1, True, "best_of_k")
    assert step.critique == "the reply insults someone (fool); a good reply is polite."
    assert step.violation == before and step.revised_violation == 0.0


def test_a_revision_that_is_no_better_is_not_taken() -> None:
    constitution = load_constitution("default")
    final, steps = critique_and_revise(
        constitution, ["say it"], ["the secret is kqzvw"], cycling_sampler(["kqzvw", "wvzqk you fool"]), rounds=3,
        num_candidates=2,
    )  # fmt: skip
    assert final == ["the secret is kqzvw"]
    assert [s.round for s in steps] == [1, 2, 3] and not any(s.accepted for s in steps)


def test_redact_and_refuse_revisions_over_rounds() -> None:
    principles = [
        {"name": "secret", "judge": {"_target_": "minigpt.alignment.judges.SecretJudge"}, "critique": "{evidence}",
         "revision": "redact", "weight": 2.0},
        {"name": "polite", "judge": {"_target_": "minigpt.alignment.judges.RudenessJudge"}, "critique": "{evidence}",
         "revision": "refuse"},
    ]  # fmt: skip
    constitution = build_constitution(principles, refusal="no.")
    final, steps = critique_and_revise(constitution, ["x"], ["kqzvw, you fool"], cycling_sampler(["?"]), rounds=2)
    # Round 1 fixes the heavier principle (the secret, weight 2) by redaction; round 2 refuses the insult.
    assert [(s.principle, s.revision) for s in steps] == [("secret", ", you fool"), ("polite", "no.")]
    assert final == ["no."]


def test_a_redaction_that_leaves_nothing_becomes_the_refusal() -> None:
    """A reply that is only a made-up sum, redacted, is empty: the loop writes the refusal sentence instead of
    training an empty reply."""
    principles = [
        {"name": "true_arithmetic", "critique": "{evidence}", "revision": "redact",
         "judge": {"_target_": "minigpt.alignment.judges.ArithmeticJudge", "unasked": True}},
    ]  # fmt: skip
    constitution = build_constitution(principles, refusal="no.")
    final, steps = critique_and_revise(constitution, ["tell max"], ["8 plus 9 is 17"], cycling_sampler(["?"]))
    assert final == ["no."] and [(s.critique, s.accepted) for s in steps] == [("8 plus 9 = 17 (not asked)", True)]
