"""The safety filter in the server: `python -m minigpt.serve run=<run> safety=filter [filter=<folder>]`.

It is the chat's `SafetyFilter` (minigpt/alignment/safety_filter.py, docs/safety.md), applied to API
requests:

- **the request**: the new input — the last user message of a chat, the prompt of a completion — passes
  `check_input` before the engine sees it. If a judge or a classifier label fires, no token is generated
  and every choice is the constitution's refusal. (Earlier turns are the client's history: they were
  checked when they were new, and the chat page keeps the refusal, not the blocked reply, in it.)
- **each reply**: a finished choice passes `check_output` with that input as its prompt and is rewritten
  (a `redact` principle's clean repair: a false sum gets its true value) or blocked (the refusal).

Both are reported the way OpenAI reports its own filter, `finish_reason: "content_filter"`, and the
choice carries a `safety` object that names what fired: `{"action": "block", "where": "prompt",
"principle": "no_insults", "source": "judge", "score": 1.0}`. The `openai` client keeps unknown fields,
so `choice.safety` reads it. A reply must be checked whole before anyone sees it, so a filtered server
streams each choice as one piece when it has ended (as the terminal chat does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from minigpt.alignment.safety_filter import FilterDecision, SafetyFilter

CONTENT_FILTER = "content_filter"  # OpenAI's finish_reason for content its filter changed or withheld


@dataclass(frozen=True)
class Choice:
    """One finished choice: its text, why it ended and, when the filter acted, the `safety` report."""

    text: str
    finish_reason: str | None
    safety: dict[str, Any] | None = None


def safety_report(decision: FilterDecision, where: str) -> dict[str, Any]:
    """The `safety` object of a choice the filter acted on (`where`: "prompt" or "reply")."""
    return {
        "action": decision.action,
        "where": where,
        "principle": decision.principle,
        "source": decision.source,
        "score": round(decision.score, 4),
    }


def screen_prompt(guard: SafetyFilter, text: str, n: int) -> list[Choice] | None:
    """The `n` refusals for a request whose input `text` the filter blocks, or None when it may be answered."""
    decision = guard.check_input(text)
    if decision.action == "allow":
        return None
    return [Choice(decision.text, CONTENT_FILTER, safety_report(decision, "prompt"))] * n


def screen_reply(guard: SafetyFilter, prompt: str, choice: Choice) -> Choice:
    """`choice` as the user may see it: untouched, rewritten or replaced by the refusal."""
    decision = guard.check_output(prompt, choice.text)
    if decision.action == "allow":
        return choice
    return replace(choice, text=decision.text, finish_reason=CONTENT_FILTER, safety=safety_report(decision, "reply"))
