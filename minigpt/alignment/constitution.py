"""The constitution as data: principles with a judge, a critique template and a revision method.

    # conf/constitution/default.yaml
    _target_: minigpt.alignment.constitution.build_constitution
    _recursive_: false                      # the judges are built here, so a bad one gets a clear error
    refusal: i will not say that.
    principles:
      - name: no_insults
        judge: {_target_: minigpt.alignment.judges.RudenessJudge}
        critique: "the reply insults someone ({evidence}); a good reply is polite."
        revision: best_of_k

Bai et al. (2022, 2212.08073 §3.1) draw one principle per critique–revision step from a list of 16; here
the step takes the principle whose judge scores the reply worst (the one with the most to fix). The
revision methods:

* `best_of_k` — sample K new replies with the model and keep the one the whole constitution scores
  lowest (the model's own revision, chosen by the judges);
* `redact` — the judge's own repair: the offending spans removed or corrected;
* `refuse` — the constitution's `refusal` sentence.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from minigpt.alignment.judges import Judge, Verdict
from minigpt.utils.errors import ConfigError

REVISIONS = ("best_of_k", "redact", "refuse")
TEMPLATE_FIELDS = {"prompt", "reply", "evidence", "principle"}
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "constitution"


@dataclass(frozen=True)
class Principle:
    """One principle: its judge, the critique it writes and how a violating reply is revised."""

    name: str
    judge: Judge
    critique: str
    revision: str = "best_of_k"
    weight: float = 1.0

    def critique_of(self, prompt: str, reply: str, verdict: Verdict) -> str:
        """The critique template filled in with this reply and the judge's evidence."""
        evidence = ", ".join(verdict.evidence) or "no specific span"
        return self.critique.format(prompt=prompt, reply=reply, evidence=evidence, principle=self.name)


@dataclass(frozen=True)
class Constitution:
    """The principles, in order, and the refusal sentence of the `refuse` revision."""

    principles: tuple[Principle, ...]
    refusal: str = "i will not say that."
    name: str = "default"

    def verdicts(self, prompt: str, reply: str) -> dict[str, Verdict]:
        """Every principle's verdict on the reply."""
        return {p.name: p.judge.judge(prompt, reply) for p in self.principles}

    def scores(self, prompt: str, reply: str) -> dict[str, float]:
        """Every principle's violation score."""
        return {name: v.score for name, v in self.verdicts(prompt, reply).items()}

    def total(self, prompt: str, reply: str) -> float:
        """Σ_p weight_p · violation_p: the constitution's overall score of a reply (0 = clean)."""
        return sum(p.weight * p.judge(prompt, reply) for p in self.principles)

    def worst(self, prompt: str, reply: str) -> tuple[Principle, Verdict] | None:
        """The principle the reply violates most (weighted), with its verdict; None if the reply is clean."""
        verdicts = self.verdicts(prompt, reply)
        principle = max(self.principles, key=lambda p: p.weight * verdicts[p.name].score)
        verdict = verdicts[principle.name]
        return (principle, verdict) if verdict.score > 0 else None


def _template_fields(template: str) -> set[str]:
    """The `{field}` names a format string uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def build_principle(node: Mapping[str, Any], index: int) -> Principle:
    """One principle from its config node, refused with one sentence when it cannot work."""
    name = node.get("name") or f"principle {index}"
    where = f"constitution principle {name!r}"
    critique = node.get("critique")
    if not isinstance(critique, str) or not critique.strip():
        raise ConfigError(
            f"{where} has no critique template; add critique: 'the reply ... ({{evidence}}); a good reply ...'."
        )
    unknown = _template_fields(critique) - TEMPLATE_FIELDS
    if unknown:
        allowed = sorted(TEMPLATE_FIELDS)
        raise ConfigError(f"{where}: critique uses {sorted(unknown)}; a template may use only {allowed}.")
    revision = node.get("revision", "best_of_k")
    if revision not in REVISIONS:
        raise ConfigError(f"{where}: revision={revision!r} is unknown; use one of {list(REVISIONS)}.")
    judge_node = node.get("judge")
    target = judge_node.get("_target_") if isinstance(judge_node, Mapping) else None
    if not target:
        raise ConfigError(f"{where} has no judge; add judge: {{_target_: minigpt.alignment.judges.RudenessJudge}}.")
    try:
        judge = instantiate(judge_node)
    except Exception as err:  # Hydra wraps import and argument errors alike: name the target and the cause
        cause: BaseException = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        reason = " ".join(str(cause).split())
        raise ConfigError(
            f"{where}: the judge {target} cannot be built ({type(cause).__name__}: {reason}); "
            "fix judge._target_ to a Judge class such as minigpt.alignment.judges.RudenessJudge."
        ) from None
    if not isinstance(judge, Judge):
        raise ConfigError(f"{where}: judge {target} is a {type(judge).__name__}, not a minigpt.alignment.judges.Judge.")
    weight = float(node.get("weight", 1.0))
    if weight <= 0:
        raise ConfigError(f"{where}: weight={weight} must be positive.")
    return Principle(str(name), judge, critique, revision, weight)


def build_constitution(
    principles: Sequence[Mapping[str, Any]] | None, refusal: str = "i will not say that.", name: str = "default"
) -> Constitution:
    """The constitution of a config node (`_recursive_: false`, so that each judge is built and checked here)."""
    if not principles:
        raise ConfigError(f"constitution {name!r} has no principles; list at least one under principles:.")
    if not refusal or not refusal.strip():
        raise ConfigError(f"constitution {name!r} refusal is empty; give the sentence the refuse revision writes.")
    built = tuple(build_principle(node, i) for i, node in enumerate(principles))
    names = [p.name for p in built]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"constitution {name!r} names {duplicates} more than once; give each principle its own name.")
    return Constitution(built, refusal, name)


def load_constitution(spec: str | Path | DictConfig | Constitution = "default") -> Constitution:
    """A constitution: itself, a composed config node, or a conf/constitution/ name or YAML path."""
    if isinstance(spec, Constitution):
        return spec
    if isinstance(spec, DictConfig):
        return instantiate(spec)
    path = Path(spec) if str(spec).endswith((".yaml", ".yml")) else CONF_DIR / f"{spec}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
        raise ConfigError(f"constitution={spec} is neither a YAML file nor one of {options}.")
    return instantiate(OmegaConf.load(path))
