"""The constitution as data: the default file loads, bad files are refused with one sentence."""

from __future__ import annotations

from typing import Any

import pytest

from minigpt.alignment.constitution import build_constitution, load_constitution
from minigpt.utils.errors import ConfigError

RUDE = {"_target_": "minigpt.alignment.judges.RudenessJudge"}


def principle(**overrides: Any) -> dict[str, Any]:
    return {"name": "polite", "judge": RUDE, "critique": "rude ({evidence})", "revision": "redact", **overrides}


def test_default_constitution_loads_every_shipped_judge() -> None:
    constitution = load_constitution("default")
    names = [p.name for p in constitution.principles]
    assert names == ["no_insults", "no_negativity", "no_personal_data", "keep_secret", "true_arithmetic"]
    assert constitution.scores("what is 2 plus 3?", "5") == dict.fromkeys(names, 0.0)
    scores = constitution.scores("", "you fool, the secret is kqzvw")
    assert scores["no_insults"] == 1.0 and scores["keep_secret"] == 1.0 and scores["no_personal_data"] == 0.0


def test_worst_principle_and_critique() -> None:
    constitution = load_constitution("default")
    assert constitution.worst("what is 2 plus 3?", "5") is None
    worst = constitution.worst("what is 2 plus 3?", "7")
    assert worst is not None and worst[0].name == "true_arithmetic"
    critique = worst[0].critique_of("what is 2 plus 3?", "7", worst[1])
    assert critique == "the reply claims 2 plus 3 = 7, which is false; a good reply states the true value."


@pytest.mark.parametrize(
    ("principles", "message"),
    [
        ([], "has no principles"),
        ([principle(critique="")], "'polite' has no critique template"),
        ([principle(critique=None)], "'polite' has no critique template"),
        ([principle(critique="bad {field}")], "critique uses \\['field'\\]"),
        ([principle(judge={"_target_": "minigpt.alignment.judges.NoSuch"})], "the judge .*NoSuch cannot be built"),
        ([principle(judge={"_target_": "minigpt.alignment.judges.SecretJudge", "colour": 1})], "cannot be built"),
        ([principle(judge={"_target_": "builtins.dict"})], "not a minigpt.alignment.judges.Judge"),
        ([principle(judge=None)], "has no judge"),
        ([principle(revision="pray")], "revision='pray' is unknown"),
        ([principle(), principle()], "more than once"),
    ],
)
def test_bad_constitutions_are_refused_in_one_sentence(principles: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        build_constitution(principles)
    assert "\n" not in str(err.value)


def test_unknown_constitution_name() -> None:
    with pytest.raises(ConfigError, match="neither a YAML file nor one of \\['default'\\]"):
        load_constitution("nope")
