"""`task=code_functions`: template-level splits, tests derived from the prompt, executed scores."""

from __future__ import annotations

import pytest

from minigpt.code.reward import CodeTask, ExecutionReward
from minigpt.code.tasks import (
    ARG_NAMES,
    NEUTRAL_NAMES,
    TEMPLATES,
    TEST_TEMPLATES,
    VAL_TEMPLATES,
    CodeFunctions,
    Template,
    find_template,
    hidden_tests,
    operations,
    split_of_template,
)
from minigpt.utils.errors import ConfigError


@pytest.fixture(scope="module")
def task() -> CodeFunctions:
    return CodeFunctions(seed=0)


def template_of(prompt: str) -> str:
    return find_template(prompt)[0].name


def test_splits_never_share_a_template(task: CodeFunctions) -> None:
    train = {template_of(ex.prompt) for ex in task.examples("train", 200)}
    val = {template_of(ex.prompt) for ex in task.examples("val", 20)}
    test = {template_of(ex.prompt) for ex in task.examples("test", 40)}
    assert test == TEST_TEMPLATES and val == VAL_TEMPLATES and not train & (val | test)
    # Under any drawn argument name, no training docstring is a held-out one (with any name of its pool).
    held_out = [TEMPLATES[name].doc_pattern() for name in VAL_TEMPLATES | TEST_TEMPLATES]
    for ex in CodeFunctions(seed=0, arg_names="shared").examples("train", 4059):
        assert not any(pattern.search(ex.prompt) for pattern in held_out), ex.prompt


def test_every_held_out_operation_is_taught_by_a_training_template() -> None:
    taught = set().union(*(operations(t) for t in TEMPLATES.values() if split_of_template(t.name) == "train"))
    for name in VAL_TEMPLATES | TEST_TEMPLATES:
        assert operations(TEMPLATES[name]) <= taught, name
        # ... and only the combination or the wording is new: no held-out docstring is a training one.
        assert all(TEMPLATES[name].doc != t.doc for t in TEMPLATES.values() if t.name != name)
    # The check can fail: the old test template `mod` needs the remainder (`x % k`), never taught.
    assert not operations(Template("mod", "x", "Return x modulo {k}.", "x % {k}", lambda *_: 0)) <= taught


def test_the_name_does_not_reveal_the_template_and_the_docstring_finds_it() -> None:
    for template in TEMPLATES.values():
        names = {template.function_name(k) for k in range(1, 100)}
        assert len(names) >= len(NEUTRAL_NAMES) - 1 and names <= set(NEUTRAL_NAMES)  # every template, most names
        for k in (1, 42, 99):
            assert find_template(template.prompt(k)) == (template, k)
            assert template.name not in template.prompt(k).split("(")[0]


def test_hidden_tests_separate_plausible_wrong_bodies() -> None:
    """Integers of both signs (`x % 39` ≡ `x + 39` on −39…−1), sequences longer than k (`s[:50]` ≡ `s`)."""
    for k in (3, 39, 99):
        add = hidden_tests(TEMPLATES["x_plus"], k, 4)
        assert any("(-" in t for t in add) and any("(-" not in t for t in add)
        name = TEMPLATES["last_chars"].function_name(k)
        sliced = [
            eval(t.removeprefix(f"assert {name}").split(" == ")[0]) for t in hidden_tests(TEMPLATES["last_chars"], k, 4)
        ]
        assert any(len(s) > k for s in sliced) and any(len(s) <= k for s in sliced)


def fails_somewhere(name: str, k: int, body: str) -> bool:
    """Whether `body` (in place of the template's) fails one of the template's hidden tests (run here: our
    own bodies, no model output)."""
    template = TEMPLATES[name]
    namespace: dict = {}
    exec(template.prompt(k) + f"    return {body}\n", namespace)
    try:
        for test in hidden_tests(template, k, 4):
            exec(test, namespace)
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize(
    ("name", "wrong"), [("above", "[]"), ("above", "[x for x in xs if x >= {k}]"), ("count", "0"), ("below", "[]")]
)
def test_filters_and_counts_see_items_around_k(name: str, wrong: str) -> None:
    """With items 0..9 and k up to 99, `return []` passed `above`'s tests; items are now drawn around k."""
    for k in (3, 50, 99):
        assert fails_somewhere(name, k, wrong.format(k=k)), (name, k)
        assert not fails_somewhere(name, k, TEMPLATES[name].body.format(k=k))


def test_every_word_and_argument_of_a_held_out_docstring_is_trained_in_several_templates() -> None:
    """The grammar's point (SCAN, Lake & Baroni 2018): each docstring word a held-out template uses occurs in
    at least two training templates, so no training docstring alone ties it to a body."""
    train = [t for t in TEMPLATES.values() if split_of_template(t.name) == "train"]
    for name in VAL_TEMPLATES | TEST_TEMPLATES:
        for word in TEMPLATES[name].doc.removesuffix(".").split():
            assert sum(word in t.doc.removesuffix(".").split() for t in train) >= 2, (name, word)
        assert sum(t.arg == TEMPLATES[name].arg for t in train) >= 5, name  # the argument, in many bodies
    # The check can fail: the old grammar's `sum_minus` ("the sum of xs minus k") had "sum" in one template.
    old_train = ["Return x minus {k}.", "Return the sum of xs plus {k}.", "Return the items of xs greater than {k}."]
    assert sum("sum" in doc.split() for doc in old_train) < 2


def test_training_prompts_vary_the_argument_name_and_held_out_ones_keep_it(task: CodeFunctions) -> None:
    """A body must copy its argument from the signature: training names are drawn per problem."""
    for mode in ("type", "shared"):
        args: dict[str, set[str]] = {}
        for ex in CodeFunctions(seed=0, arg_names=mode).examples("train", 4059):
            template, k = find_template(ex.prompt)
            arg = ex.prompt.split("(")[1].split(")")[0]
            assert arg in template.pool(shared=mode == "shared") and ex.answer == template.answer(k, arg)
            args.setdefault(template.name, set()).add(arg)
        # Per type, the list templates never see `x`; shared, the int templates see `xs` and the list ones `x`.
        assert ("xs" in args["x_plus"] and "x" in args["first_items"]) == (mode == "shared")
        assert "s" not in args["len_xs_plus"] and len(args["len_xs_plus"]) > 2  # "the length of" stays typed
    for split in ("val", "test"):
        for ex in task.examples(split, 50):
            template, _ = find_template(ex.prompt)
            assert f"({template.arg}):" in ex.prompt  # held-out prompts: the template's own name
    fixed = CodeFunctions(seed=0, arg_names="fixed").examples("train", 200)
    assert all(f"({find_template(ex.prompt)[0].arg}):" in ex.prompt for ex in fixed)


def test_a_renamed_problem_is_the_same_problem() -> None:
    """Renaming the argument keeps the template, k, the function's name and the hidden tests; the "length
    of" templates' pools are disjoint, so "the length of s" and "the length of xs" stay apart."""
    pools = [set(ARG_NAMES[t.arg]) for t in TEMPLATES.values() if t.name.endswith("_plus") and "len_" in t.name]
    assert len(pools) == 4 and sum(map(len, pools)) == len(set().union(*pools))
    for template in TEMPLATES.values():
        for arg in template.pool():
            prompt = template.prompt(42, arg)
            assert find_template(prompt) == (template, 42) and f"({arg}):" in prompt
            assert template.function_name(42) in prompt.split("(")[0]
            namespace: dict = {}
            exec(template.source(42, arg), namespace)
            for test in hidden_tests(template, 42, 4):
                exec(test, namespace)  # the renamed reference passes the template's tests
    with pytest.raises(ValueError, match="pool"):
        TEMPLATES["len_s_plus"].prompt(3, "xs")
    with pytest.raises(ConfigError, match="arg_names"):
        CodeFunctions(arg_names="random")


def row(name: str) -> str:
    """A template's row family: slice, repetition or aggregate (what the validation rule mirrors)."""
    if name.startswith("repeat_"):
        return "repetition"
    body = TEMPLATES[name].body
    return "slice" if "[" in body and " for " not in body else "aggregate"


def test_validation_mirrors_the_test_rows() -> None:
    """The rule fixed before measuring (session 14): one validation cell per test row family, in another
    column, so validation warns about the kind of error the test split would show."""
    assert sorted(map(row, VAL_TEMPLATES)) == sorted(map(row, TEST_TEMPLATES)) == ["aggregate", "repetition", "slice"]
    for test in TEST_TEMPLATES:
        (val,) = (v for v in VAL_TEMPLATES if row(v) == row(test))
        assert val.split("_")[-1] != test.split("_")[-1], (val, test)  # another column: kind, or operator


def test_reference_bodies_pass_and_wrong_ones_fail(task: CodeFunctions) -> None:
    examples = task.examples("test", 4)
    assert [task.score(ex.prompt, ex.answer) for ex in examples] == [1.0] * 4
    assert task.score(examples[0].prompt, "    return None\n") == 0.0


def test_tests_come_from_the_prompt_alone(task: CodeFunctions) -> None:
    prompt = task.examples("train", 1)[0].prompt
    assert CodeFunctions(seed=5).code_problem(prompt) == task.code_problem(prompt)
    assert len(task.code_problem(prompt).tests) == 4


def test_it_is_a_code_task_for_the_execution_reward(task: CodeFunctions) -> None:
    assert isinstance(task, CodeTask)
    ex = task.examples("val", 1)[0]
    rewards = ExecutionReward({"code_functions": task}, workers=2)(
        [ex.prompt] * 2, [ex.answer, "    return 0\n"], ["code_functions"] * 2
    )
    assert rewards[0] == 1.0 and rewards[1] < 1.0
