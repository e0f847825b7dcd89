"""The input and output filter of the chat and the server (`safety=filter` in `python -m minigpt.cli.chat`
and `python -m minigpt.serve`; `safety_filter_from_config` builds it for both).

Two layers, each naming the principle that fired:

* the constitution's **judges** (exact rules: the insult lexicon, VADER, the personal-data patterns, the
  secret, the arithmetic verifier);
* the learned **classifier** (`minigpt.alignment.filter_model`, optional: `filter=<folder>`), which also
  catches the spellings the rules miss (`id1ot`, `i d i o t`) and carries the prompt-injection detector.

On the user's prompt, a judge or a classifier label that fires **blocks** it (the model is not asked).
On the model's reply, a judge whose principle's revision is `redact` **rewrites** it with the judge's repair
(a false sum gets its true value) when the repair is clean; anything else that fires **blocks** it (the
constitution's refusal sentence is shown instead). The injection label only applies to prompts: a
reply is not an attack on the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from minigpt.alignment.constitution import Constitution, load_constitution
from minigpt.alignment.filter_model import INJECTION, HarmClassifier, load_filter, predict
from minigpt.tokenizer.base import Tokenizer
from minigpt.utils.errors import ConfigError


@dataclass(frozen=True)
class FilterDecision:
    """What the filter did: `allow`, `rewrite` or `block`; the text to show; who fired and how strongly."""

    action: str
    text: str
    principle: str | None = None
    source: str | None = None  # "judge" or "classifier"
    score: float = 0.0

    def report(self) -> str:
        """One line for the user, e.g. `filter: reply blocked — no_insults (judge, 1.00)`."""
        if self.action == "allow":
            return ""
        return f"{self.action} — {self.principle} ({self.source}, {self.score:.2f})"


class SafetyFilter:
    """The two layers of the module docstring.

    Args:
        constitution: the principles (their judges, revisions and the refusal sentence).
        classifier, tokenizer: the learned filter and its tokenizer, or None for the judges alone.
        threshold: a classifier label fires at this probability.
    """

    def __init__(
        self,
        constitution: Constitution,
        classifier: HarmClassifier | None = None,
        tokenizer: Tokenizer | None = None,
        threshold: float = 0.5,
    ) -> None:
        self.constitution, self.classifier, self.tokenizer, self.threshold = (
            constitution,
            classifier,
            tokenizer,
            threshold,
        )

    def _classify(self, text: str, injection: bool) -> tuple[str, float] | None:
        """The classifier's most probable label at or above the threshold (no injection on replies)."""
        if self.classifier is None or self.tokenizer is None:
            return None
        probs = predict(self.classifier, self.tokenizer, [text])[0]
        fired = [
            (float(p), name)
            for name, p in zip(self.classifier.labels, probs)
            if p >= self.threshold and (injection or name != INJECTION)
        ]
        return (max(fired)[1], max(fired)[0]) if fired else None

    def check_input(self, prompt: str) -> FilterDecision:
        """Block a prompt a judge or the classifier (its injection label included) flags."""
        worst = self.constitution.worst("", prompt)
        if worst is not None:
            return FilterDecision("block", self.constitution.refusal, worst[0].name, "judge", worst[1].score)
        label = self._classify(prompt, injection=True)
        if label is not None:
            return FilterDecision("block", self.constitution.refusal, label[0], "classifier", label[1])
        return FilterDecision("allow", prompt)

    def check_output(self, prompt: str, reply: str) -> FilterDecision:
        """Rewrite a reply a `redact` principle can repair cleanly; block one anything else flags."""
        worst = self.constitution.worst(prompt, reply)
        if worst is not None:
            principle, verdict = worst
            if principle.revision == "redact":
                repaired = principle.judge.repair(prompt, reply)
                if repaired.strip() and self.constitution.worst(prompt, repaired) is None:
                    return FilterDecision("rewrite", repaired, principle.name, "judge", verdict.score)
            return FilterDecision("block", self.constitution.refusal, principle.name, "judge", verdict.score)
        label = self._classify(reply, injection=False)
        if label is not None:
            return FilterDecision("block", self.constitution.refusal, label[0], "classifier", label[1])
        return FilterDecision("allow", reply)


def safety_filter_from_config(cfg: DictConfig) -> SafetyFilter | None:
    """The `SafetyFilter` of a command's keys, or None when `safety` is unset.

    `safety=filter` turns it on; `constitution` names the principles (a conf/constitution/ node), `filter`
    the folder of `python -m minigpt.alignment.filter_train` (None: the judges alone), `filter_threshold`
    the probability at which a classifier label fires, `device` where the classifier runs.
    """
    if cfg.safety is None:
        return None
    if cfg.safety != "filter":
        raise ConfigError(f"safety={cfg.safety!r} is not known; use safety=filter or leave it unset.")
    classifier, tokenizer = load_filter(cfg.filter, cfg.device) if cfg.filter else (None, None)
    return SafetyFilter(load_constitution(cfg.constitution), classifier, tokenizer, cfg.filter_threshold)
