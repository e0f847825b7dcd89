"""The phrasing probe: the share of true sums per phrasing, scored by the arithmetic verifier."""

from __future__ import annotations

import re

from minigpt.alignment.phrasings import PROBE_FORMS, true_sum_rates


def _adds_only_after_what_is(prompts: list[str]) -> list[str]:
    """A fake model: the bare sum for `what is a plus b?`, the whole claim off by one for `compute`, else c."""
    out = []
    for p in prompts:
        a, b, *c = map(int, re.findall(r"\d+", p))
        if p.startswith("what is") and p.endswith("?"):
            out.append(str(a + b))
        elif p.startswith("compute"):
            out.append(f"{a} plus {b} is {a + b + 1}")
        else:
            out.append(str(c[0]) if c else "noise")  # copies the claimed value; or claims nothing
    return out


def test_rates_follow_the_verifier() -> None:
    rates = true_sum_rates(_adds_only_after_what_is, n=50)
    assert set(rates) == set(PROBE_FORMS)
    assert rates["what is {} plus {}?"] == 1.0
    assert rates["compute {} plus {}"] == 0.0  # a false whole claim
    assert rates["{} plus {}"] == 0.0  # no claim is not a true sum
    assert rates["certify {} plus {} is {}"] == 0.0  # the copied wrong value
    assert true_sum_rates(
        lambda ps: [str(sum(map(int, re.findall(r"\d+", p)[:2]))) for p in ps], ["add {} and {}"]
    ) == {
        "add {} and {}": 0.0  # a bare number claims nothing where the prompt names no expression ("and")
    }
