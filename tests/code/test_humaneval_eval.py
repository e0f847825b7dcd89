"""HumanEval pass@k of a model: sampling, truncation at the function's end, judging and the estimator."""

from __future__ import annotations

import json

import pytest

from minigpt.code.humaneval_eval import evaluate_humaneval, truncate_at_stop
from minigpt.code.problems import CodeProblem
from minigpt.tokenizer.byte import ByteTokenizer
from minigpt.utils.errors import ConfigError

PROBLEMS = [
    CodeProblem(
        task_id=f"toy/{i}",
        prompt=f"def f{i}(x):\n    '''Return x.'''\n",
        canonical_solution="    return x\n",
        setup=f"def check(candidate):\n    assert candidate({i}) == {i}\n",
        tests=(f"check(f{i})",),
    )
    for i in range(2)
]


def test_a_completion_ends_where_the_function_does() -> None:
    assert truncate_at_stop("    return x\n\ndef g():\n    pass") == "    return x\n"
    assert truncate_at_stop("    return x\nprint(f(1))") == "    return x"
    assert truncate_at_stop("    return x") == "    return x"


def test_an_untrained_model_gets_an_honest_zero(tiny_model) -> None:
    tokenizer = ByteTokenizer()
    model = tiny_model(vocab_size=tokenizer.vocab_size)
    result = evaluate_humaneval(model, tokenizer, n=2, k=(1, 2), max_new_tokens=8, problems=PROBLEMS)
    assert result["problems"] == 2 and result["n"] == 2 and sum(result["statuses"].values()) == 4
    assert result["pass@1"] == 0.0 and result["pass@2"] == 0.0  # random bytes do not return x


def test_k_above_n_is_one_sentence(tiny_model) -> None:
    with pytest.raises(ConfigError, match=r"humaneval.k=\[1, 10\] needs every k between 1 and humaneval.n=5"):
        evaluate_humaneval(tiny_model(), ByteTokenizer(), n=5, k=(1, 10), problems=PROBLEMS)


def test_pass_at_k_counts_each_problems_samples(tiny_model, monkeypatch) -> None:
    # Problem 0: 1 of 2 samples right; problem 1: none. pass@1 = (1/2 + 0)/2, pass@2 = (1 + 0)/2.
    samples = [["    return x\n", "    return x + 1\n"], ["    return None\n", "    return 0\n"]]
    monkeypatch.setattr("minigpt.code.humaneval_eval.sample_completions", lambda *args: samples)
    result = evaluate_humaneval(tiny_model(), ByteTokenizer(), n=2, k=(1, 2), problems=PROBLEMS)
    assert result["pass@1"] == pytest.approx(0.25) and result["pass@2"] == pytest.approx(0.5)
    assert result["statuses"] == {"passed": 1, "failed": 3}


def test_evaluate_py_eval_humaneval_writes_pass_at_k(compose_train, compose_eval, tmp_path) -> None:
    from minigpt.evaluation.report import evaluate_run
    from minigpt.run import train

    train(compose_train("trainer.max_steps=2", "trainer.val_check_interval=2"))
    cfg = compose_eval(
        f"run={tmp_path / 'run' / 'model'}",
        "eval=humaneval",
        "humaneval.n=2",
        "humaneval.k=[1,2]",
        "humaneval.limit=2",
        "humaneval.max_new_tokens=8",
        "num_samples=0",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    results = evaluate_run(cfg)
    saved = json.loads((tmp_path / "run" / "model" / "eval.json").read_text())["humaneval"]
    assert saved == results["humaneval"] and saved["problems"] == 2 and set(saved) >= {"pass@1", "pass@2"}
    assert sum(saved["statuses"].values()) == 4 and saved["example"]["task_id"] == "HumanEval/0"
