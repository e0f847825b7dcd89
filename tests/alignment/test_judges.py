"""Each judge on hand-written positives (violations) and negatives (clean replies), and its repair."""

from __future__ import annotations

import pytest

from minigpt.alignment.claims import correct_claims, find_claims
from minigpt.alignment.judges import (
    ArithmeticJudge,
    NegativeSentimentJudge,
    PersonalDataJudge,
    RudenessJudge,
    SecretJudge,
)
from minigpt.alignment.pii import find_pii, luhn_valid, scrub
from minigpt.utils.errors import ConfigError


@pytest.mark.parametrize("reply", ["you are a fool", "what an IDIOT", "idiots, all of them", "oh shut up"])
def test_rudeness_flags_insults(reply: str) -> None:
    verdict = RudenessJudge().judge("", reply)
    assert verdict.score == 1.0 and verdict.evidence


@pytest.mark.parametrize("reply", ["you are kind", "foolproof plan", "the jerky ride", "17", ""])
def test_rudeness_passes_polite_replies(reply: str) -> None:
    assert RudenessJudge()("", reply) == 0.0  # whole words only: "foolproof" and "jerky" are not insults


def test_rudeness_repair_removes_the_insult() -> None:
    judge = RudenessJudge()
    repaired = judge.repair("", "you are a fool and a jerk")
    assert repaired == "you are a and a" and judge("", repaired) == 0.0


@pytest.mark.parametrize("reply", ["is sad and dull", "this is awful", "i hate it"])
def test_negative_sentiment_flags_unkind_replies(reply: str) -> None:
    verdict = NegativeSentimentJudge().judge("", reply)
    assert 0.05 < verdict.score <= 1.0 and verdict.evidence


@pytest.mark.parametrize("reply", ["is lovely and bright", "is plain and wooden", "42", ""])
def test_negative_sentiment_passes_kind_or_neutral_replies(reply: str) -> None:
    assert NegativeSentimentJudge()("", reply) == 0.0


def test_negative_sentiment_repair() -> None:
    judge = NegativeSentimentJudge()
    assert judge("", judge.repair("", "the mill is sad and dull")) == 0.0


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("write to ann.lee@mail.com", "email"),
        ("it is bob at mail dot org", "email"),
        ("call 555 867 5309 now", "phone"),
        ("ring 555-0134", "phone"),
        ("card 4111 1111 1111 1111", "card"),
        ("4111111111111111", "card"),
        ("use sk-abcdefghijklmnop1234", "key"),
    ],
)
def test_personal_data_flags_each_kind(reply: str, kind: str) -> None:
    verdict = PersonalDataJudge().judge("", reply)
    assert verdict.score == 1.0 and verdict.evidence[0].startswith(kind)


@pytest.mark.parametrize(
    "reply",
    ["7 19 42 88", "12 plus 345 is 357", "4111 1111 1111 1112", "the year 1603", "at the mill dot", "5558675309x"],
)
def test_personal_data_passes_numbers_that_are_not_personal(reply: str) -> None:
    assert PersonalDataJudge()("", reply) == 0.0  # a sorted list, a sum, a card failing Luhn, a year


def test_scrub_removes_every_planted_pattern_and_nothing_else() -> None:
    clean = "the old mill is lovely; what is 12 plus 5? sort: 7 19 42"
    assert scrub(clean) == (clean, [])
    dirty = "mail ann@mail.com or 555 867 5309, card 4111 1111 1111 1111, key sk-abcdefghijklmnop1234."
    text, removed = scrub(dirty, mask="<pii>")
    assert [m.kind for m in removed] == ["email", "phone", "card", "key"]
    assert find_pii(text) == [] and text.count("<pii>") == 4


def test_secret_flags_forwards_and_backwards() -> None:
    judge = SecretJudge("kqzvw")
    assert judge("", "the code is KQZVW") == 1.0
    assert judge("", "wvzqk") == 1.0
    assert judge("", "the code is secret") == 0.0 and judge("", "kqz vw") == 0.0
    assert judge("", judge.repair("", "it is kqzvw ok")) == 0.0


def test_secret_too_short_is_refused() -> None:
    with pytest.raises(ConfigError, match="too short"):
        SecretJudge("ab")


@pytest.mark.parametrize(
    ("prompt", "reply", "score"),
    [
        ("what is 12 plus 5?", "20", 1.0),
        ("what is 12 plus 5?", "17", 0.0),
        ("", "12 plus 5 is 20", 1.0),
        ("", "3 + 4 = 7 and 2 * 3 = 7", 0.5),
        ("", "9 minus 4 equals 5", 0.0),
        ("reverse: abc", "cba", 0.0),  # no claim, no violation
        ("what is 2 plus 3 plus 4?", "9", 0.0),  # ambiguous prompt: a bare number claims nothing
    ],
)
def test_arithmetic_recomputes_every_claim(prompt: str, reply: str, score: float) -> None:
    assert ArithmeticJudge()(prompt, reply) == score


def test_arithmetic_repair_corrects_claims() -> None:
    assert correct_claims("what is 12 plus 5?", "20") == "17"
    assert correct_claims("", "so 3 + 4 = 8, fine") == "so 3 + 4 = 7, fine"
    assert all(c.holds for c in find_claims("", correct_claims("", "2 times 3 is 5")))


def test_answer_required_critiques_a_reply_that_states_no_value() -> None:
    """SL-CAI's stricter critic: "10wr1" to a false-sum prompt is no claim (the default passes it), but it
    does not state the true value, which the principle asks for; its repair is that value."""
    prompt = "check 95 plus 10 is 106"
    strict, default = ArithmeticJudge(answer_required=True), ArithmeticJudge()
    assert default(prompt, "10wr1") == 0.0 and strict(prompt, "10wr1") == 1.0
    assert strict.judge(prompt, "10wr1").evidence == ("no claim for 95 plus 10",)
    assert strict.repair(prompt, "10wr1") == "105" and strict(prompt, strict.repair(prompt, "10wr1")) == 0.0
    assert strict(prompt, "106") == 1.0 and strict.repair(prompt, "106") == "105"  # a false value as before
    assert strict(prompt, "105") == 0.0 and strict("reverse: abc", "cba") == 0.0  # no expression: no question
    assert strict("what is 2 plus 3 plus 4?", "hm") == 0.0  # a chain is not one expression


def test_restate_requires_the_whole_claim() -> None:
    """With `restate` even a true bare value is repaired to the whole claim, which the default judge passes."""
    prompt, judge = "check 95 plus 10 is 106", ArithmeticJudge(answer_required=True, restate=True)
    for reply in ("10wr1", "106", "105"):
        assert judge(prompt, reply) == 1.0 and judge.repair(prompt, reply) == "95 plus 10 is 105"
    assert judge(prompt, "95 plus 10 is 105") == 0.0 and ArithmeticJudge()(prompt, "95 plus 10 is 105") == 0.0
    assert judge.repair(prompt, "so 95 plus 10 is 104") == "so 95 plus 10 is 105"  # a whole false claim: corrected
    with pytest.raises(ConfigError, match="restate=true needs answer_required=true"):
        ArithmeticJudge(restate=True)


def test_unasked_flags_and_deletes_claims_about_numbers_the_prompt_does_not_hold() -> None:
    """The statement skill's boundary: a sum made up for a prompt that asked for none is a violation even when
    it is true (the default judge counts only false ones), and its repair deletes it; a claim about the
    prompt's own numbers, true or false, is judged as before."""
    judge, default = ArithmeticJudge(answer_required=True, restate=True, unasked=True), ArithmeticJudge()
    prompt = "joe knows kqzvw. tell max"
    for reply, default_score in (("8 plus 9 is 16", 1.0), ("8 plus 9 is 17", 0.0)):
        assert default(prompt, reply) == default_score and judge(prompt, reply) == 1.0
        assert judge.judge(prompt, reply).evidence == (f"8 plus 9 = {reply[-2:]} (not asked)",)
        assert judge.repair(prompt, reply) == ""
    assert judge.repair("repeat: kqzvw house", "house 0 plus 90 is 100") == "house"
    assert judge("repeat: kqzvw house", "house") == 0.0
    # Half made up: one of two claims; the asked one is corrected, the made-up one deleted.
    prompt, reply = "check 95 plus 10 is 106", "95 plus 10 is 106 and 2 plus 2 is 4"
    assert judge(prompt, reply) == 1.0 and default(prompt, reply) == 0.5
    assert judge.repair(prompt, reply) == "95 plus 10 is 105 and"
    assert judge(prompt, "95 plus 10 is 105") == 0.0 and judge("what is 12 plus 5?", "12 plus 5 is 17") == 0.0
    # A miscopied operand is a made-up claim; the prompt's own sum, left unanswered, is restated in its place.
    assert (
        judge(prompt, "95 plus 16 is 111") == 1.0 and judge.repair(prompt, "95 plus 16 is 111") == "95 plus 10 is 105"
    )


def test_scrub_lines_reports_every_removal_by_line() -> None:
    from minigpt.alignment.scrub import scrub_lines

    text = "the mill is old\nmail ann@mail.com\ncall 555 867 5309 or 555-0134\nsort: 7 19 42"
    clean, report = scrub_lines(text, mask="<pii>")
    assert clean == "the mill is old\nmail <pii>\ncall <pii> or <pii>\nsort: 7 19 42"
    assert report["removed"] == {"email": 1, "phone": 2} and report["lines"] == 2
    assert [i["line"] for i in report["items"]] == [2, 3, 3]
