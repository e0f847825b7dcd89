"""pass@k: the chance that at least one of k samples passes, estimated without bias from n ≥ k samples.

Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1): draw n samples per problem,
count the c that pass; then

    pass@k = E_problems[ 1 - C(n - c, k) / C(n, k) ]

C(n - c, k) / C(n, k) is the chance that k samples drawn without replacement from the n are all failures.
Estimating pass@k as 1 - (1 - c/n)^k instead is biased low (Chen et al., fig. 13). The binomials overflow
and lose precision for n in the hundreds, so the ratio is computed as the product (their numerically
stable form):

    C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i)
"""

from __future__ import annotations

from collections.abc import Sequence

from minigpt.utils.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with `c` of `n` samples correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ConfigError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k} (draw n >= k samples).")
    if n - c < k:
        return 1.0  # fewer than k failures: every draw of k holds a correct sample
    all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        all_fail *= 1.0 - k / i
    return 1.0 - all_fail


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n samples, c correct)."""
    if not counts:
        raise ConfigError("pass@k needs at least one problem.")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)
