"""pass@k (Chen et al. 2021, eq. 1) on counts worked out by hand."""

from __future__ import annotations

from math import comb

import pytest

from minigpt.code.pass_at_k import mean_pass_at_k, pass_at_k
from minigpt.utils.errors import ConfigError


def test_pass_at_1_is_the_fraction_correct() -> None:
    # 1 - C(n-c, 1)/C(n, 1) = 1 - (n-c)/n = c/n
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)


def test_hand_worked_counts() -> None:
    # n=5, c=2, k=2: the two draws both fail with chance C(3,2)/C(5,2) = 3/10, so pass@2 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=3: C(3,3)/C(4,3) = 1/4, so pass@3 = 0.75
    assert pass_at_k(4, 1, 3) == pytest.approx(0.75)


def test_edge_counts() -> None:
    assert pass_at_k(20, 0, 10) == 0.0  # nothing passes
    assert pass_at_k(20, 11, 10) == 1.0  # only 9 failures: any 10 samples hold a correct one
    assert pass_at_k(20, 20, 1) == 1.0


def test_matches_the_binomial_form_and_stays_finite_for_large_n() -> None:
    for n, c, k in [(20, 3, 10), (50, 7, 5), (100, 1, 100 - 1)]:
        assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))
    assert 0.0 < pass_at_k(2000, 1, 10) == pytest.approx(10 / 2000)  # exact: k/n when one sample passes


def test_is_not_the_biased_estimate() -> None:
    # 1 - (1 - c/n)^k = 1 - 0.6^2 = 0.64 underestimates the 0.7 of drawing without replacement
    assert pass_at_k(5, 2, 2) > 1 - (1 - 2 / 5) ** 2


def test_mean_over_problems() -> None:
    assert mean_pass_at_k([(5, 2), (4, 1), (5, 0)], k=1) == pytest.approx((0.4 + 0.25 + 0.0) / 3)


def test_bad_counts_are_one_sentence() -> None:
    with pytest.raises(ConfigError, match="n >= k"):
        pass_at_k(5, 1, 10)
