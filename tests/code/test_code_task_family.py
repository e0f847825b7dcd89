"""The code tasks beyond `code_functions`: mutants, repair, unit tests, output prediction, error lines,
docstring ↔ function on the standard library. Gold answers score 1 in the sandbox, wrong ones less, and
the splits never share a template or a module."""

from __future__ import annotations

import ast
import random

import pytest

from minigpt.code.all_tasks import CODE_TASKS
from minigpt.code.docstring_tasks import CodeFromDocstring, CodeToDocstring, word_f1
from minigpt.code.mutation import mutants, normalise
from minigpt.code.program_tasks import ERROR_PROGRAMS, OUTPUT_PROGRAMS, CodeErrorLine, CodeOutput, _shape
from minigpt.code.repair_tasks import CodeRepair, CodeUnitTests
from minigpt.code.reward import CodeTask, ExecutionReward
from minigpt.code.tasks import TEMPLATES, TEST_TEMPLATES, VAL_TEMPLATES, find_template
from minigpt.tasks.base import get_task, task_names

ABOVE = TEMPLATES["above"].source(7)  # def <neutral name>(xs): """Return the items of xs greater than 7.""" …
NAME = TEMPLATES["above"].function_name(7)


def test_each_mutant_changes_one_node_of_each_kind() -> None:
    found = mutants(ABOVE)
    assert {m.kind for m in found} == {"operator", "off_by_one", "name"}
    assert {m.change for m in found} >= {"> → >=", "7 → 8", "7 → 6", "xs → x"}
    original = ast.dump(ast.parse(ABOVE))
    for mutant in found:
        assert mutant.source != normalise(ABOVE) and ast.dump(ast.parse(mutant.source)) != original
        assert '"""Return the items of xs greater than 7."""' in mutant.source  # the docstring is never mutated


def template_names(task: CodeRepair | CodeUnitTests, split: str, n: int) -> set[str]:
    return {find_template(ex.prompt)[0].name for ex in task.examples(split, n)}


@pytest.mark.parametrize("task_class", [CodeRepair, CodeUnitTests])
def test_mutant_tasks_split_by_template(task_class: type[CodeRepair]) -> None:
    task = task_class(seed=0)
    train, val, test = (template_names(task, s, n) for s, n in (("train", 150), ("val", 15), ("test", 30)))
    assert test == TEST_TEMPLATES and val == VAL_TEMPLATES and not train & (val | test)


def test_repair_gold_passes_and_the_bug_fails() -> None:
    task = CodeRepair(seed=0)
    for ex in task.examples("test", 3):
        broken = ex.prompt.removeprefix("Fix the bug:\n")
        assert task.score(ex.prompt, ex.answer) == 1.0
        assert task.score(ex.prompt, broken) < 1.0


def test_unit_tests_are_scored_by_mutation_score() -> None:
    task = CodeUnitTests(seed=0, num_mutants=4)
    prompt = f"Write asserts for:\n{normalise(ABOVE)}"
    assert 1 <= len(task.code_problem(prompt).tests) <= 4  # the breaking mutants, at most num_mutants
    assert task.score(prompt, f"assert {NAME}([9, 7, 8, 6]) == [9, 8]\nassert {NAME}([1]) == []\n") == 1.0
    assert task.score(prompt, f"assert {NAME}([]) == [1]\n") == 0.0  # false on the function itself
    assert task.score(prompt, "pass\n") == 0.0  # holds everywhere, kills nothing
    weak = task.score(prompt, f"assert {NAME}([1]) == []\n")  # kills only the mutants that break on small items
    assert 0.0 < weak < 1.0
    ex = task.examples("train", 1)[0]
    assert task.score(ex.prompt, ex.answer) == 1.0


@pytest.mark.parametrize(("programs", "size"), [(OUTPUT_PROGRAMS, 11), (ERROR_PROGRAMS, 6)])
def test_each_program_template_has_one_shape_of_its_own(programs: dict, size: int) -> None:
    shapes = {name: {_shape(make(random.Random(i))) for i in range(200)} for name, make in programs.items()}
    assert all(len(s) == 1 for s in shapes.values()) and len(set().union(*shapes.values())) == size


@pytest.mark.parametrize("task_class", [CodeOutput, CodeErrorLine])
def test_program_tasks_run_their_gold_and_split_by_template(task_class: type[CodeOutput]) -> None:
    task = task_class(seed=0)
    splits = {
        s: {task.template_of(ex.prompt) for ex in task.examples(s, n)}
        for s, n in [("train", 100), ("val", 8), ("test", 16)]
    }
    assert splits["test"] == {n for n, s in task.splits.items() if s == "test"}
    assert not splits["train"] & (splits["val"] | splits["test"])
    examples = task.examples("test", 3)
    assert [task.score(ex.prompt, ex.answer) for ex in examples] == [1.0] * 3
    assert task.score(examples[0].prompt, "99") == 0.0


def test_error_prompts_do_not_give_the_line_away() -> None:
    task = CodeErrorLine(seed=0)
    for ex in task.examples("train", 40):
        error = ex.prompt.rsplit("\n", 1)[1]
        assert "line" not in error and "Error" in error
        body = ex.prompt.split("\n")[1:-1]
        assert 1 <= int(ex.answer) <= len(body)


@pytest.fixture(scope="module")
def stdlib_tasks(tmp_path_factory: pytest.TempPathFactory) -> tuple[CodeFromDocstring, CodeToDocstring]:
    cache = str(tmp_path_factory.mktemp("cache"))  # records the first 200 stdlib files' functions (~5 s)
    return CodeFromDocstring(cache_dir=cache, max_files=200), CodeToDocstring(cache_dir=cache, max_files=200)


def test_stdlib_splits_never_share_a_module(stdlib_tasks: tuple[CodeFromDocstring, CodeToDocstring]) -> None:
    to_code, to_doc = stdlib_tasks
    modules = {
        split: {to_code.by_prompt[ex.prompt][0].module for ex in to_code.examples(split, 100)}
        for split in ("train", "val", "test")
    }
    assert all(modules.values()) and not modules["train"] & (modules["val"] | modules["test"])
    assert not modules["val"] & modules["test"]
    doc_test = {to_doc.by_prompt[ex.prompt][0].module for ex in to_doc.examples("test", 100)}
    assert doc_test == modules["test"]  # one split per module for both tasks


def test_stdlib_bodies_pass_their_recorded_tests(stdlib_tasks: tuple[CodeFromDocstring, CodeToDocstring]) -> None:
    to_code, _ = stdlib_tasks
    examples = to_code.examples("train", 4)
    assert [to_code.score(ex.prompt, ex.answer) for ex in examples] == [1.0] * len(examples)
    assert to_code.score(examples[0].prompt, "    return None\n") < 1.0


def test_summaries_are_scored_by_word_f1(stdlib_tasks: tuple[CodeFromDocstring, CodeToDocstring]) -> None:
    assert word_f1("return the sum", "Return the sum of x.") == pytest.approx(2 * 1.0 * 0.6 / 1.6)
    assert word_f1("", "anything") == 0.0
    _, to_doc = stdlib_tasks
    ex = to_doc.examples("train", 1)[0]
    assert to_doc.score(ex.prompt, ex.answer) == 1.0 and '"""' not in ex.prompt


def test_every_code_task_is_registered_and_the_executed_ones_feed_the_reward() -> None:
    assert set(CODE_TASKS) <= set(task_names())
    assert isinstance(get_task("code_repair"), CodeRepair)
    executed = [name for name, cls in CODE_TASKS.items() if issubclass(cls, CodeTask)]
    assert "code_to_docstring" not in executed and len(executed) == 6
    task = CodeOutput(seed=0)
    ex = task.examples("val", 1)[0]
    rewards = ExecutionReward({"code_output": task}, workers=2)(
        [ex.prompt] * 2, [ex.answer, "nothing"], ["code_output"] * 2
    )
    assert rewards.tolist() == [1.0, 0.0]


def test_prompts_fit_a_small_context() -> None:
    """The longest prompt of each generated task stays short (characters ≈ bytes for this ASCII text)."""
    longest = {
        name: max(len(ex.prompt) for ex in CODE_TASKS[name](seed=0).examples("train", 200))
        for name in ("code_repair", "code_unit_tests", "code_output", "code_error_line")
    }
    assert max(longest.values()) <= 200, longest
    assert max(len(ex.answer) for ex in CodeUnitTests(seed=0).examples("train", 200)) <= 200
