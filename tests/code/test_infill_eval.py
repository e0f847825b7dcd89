"""`eval=infill`: held-out lines cut whole from their pieces, the exact-match share on known replies."""

from __future__ import annotations

import ast

import pytest
import torch

from minigpt.code import infill_eval
from minigpt.code.fim import FIM_MIDDLE, FIM_TOKENS, chunk_lines
from minigpt.code.infill_eval import (
    evaluate_infill,
    infill_exact_match,
    infill_examples,
    infill_prompt,
    middle_loss,
    validation_documents,
)
from minigpt.model.config import ModelConfig
from minigpt.model.transformer import Transformer
from minigpt.tokenizer.bpe import BPETokenizer
from minigpt.utils.errors import ConfigError

DOCS = ["".join(f"def f{i}_{j}(x):\n    y = x * {j}\n    return y + {i}\n\n" for j in range(6)) for i in range(4)]


def tokenizer(special: tuple[str, ...] = ("<|bos|>", "<|eos|>", "<|pad|>", *FIM_TOKENS)) -> BPETokenizer:
    return BPETokenizer.train(DOCS, 300, "code", list(special), 2)


def replying(monkeypatch: pytest.MonkeyPatch, tok: BPETokenizer, texts: list[str]) -> None:
    """Make `generate` answer the prompts it gets with `texts`, in order (a stand-in for the model)."""
    replies = iter(texts)

    class Replies:
        def __init__(self, n: int) -> None:
            self.rows = [tok.encode(next(replies)) for _ in range(n)]

        def token_lists(self) -> list[list[int]]:
            return self.rows

    monkeypatch.setattr(infill_eval, "generate", lambda model, prompts, config, **_: Replies(len(prompts)))


def test_examples_are_whole_lines_of_one_piece() -> None:
    pieces = {p for doc in DOCS for p in chunk_lines(doc, 80)}
    examples = infill_examples(DOCS, 100, seed=1, piece_chars=80, min_chars=4)
    assert len(examples) == len(pieces) and len(infill_examples(DOCS, 5, seed=1, piece_chars=80)) == 5
    for ex in examples:
        assert ex.prefix + ex.middle + ex.suffix in pieces
        assert ex.middle.endswith("\n") and ex.middle.count("\n") == 1 and len(ex.middle.strip()) >= 4
        assert ex.prefix == "" or ex.prefix.endswith("\n")
    assert infill_prompt(examples[0], "psm").endswith(FIM_MIDDLE)
    assert infill_prompt(examples[0], "spm").endswith(FIM_MIDDLE + examples[0].prefix)


def test_max_chars_keeps_only_short_middle_lines() -> None:
    short = infill_examples(DOCS, 100, seed=1, piece_chars=80, min_chars=4, max_chars=10)
    assert short and all(ex.middle.strip().startswith("y = x *") for ex in short)  # the only lines of 4-10
    every = infill_examples(DOCS, 100, seed=1, piece_chars=80, min_chars=4)
    assert any(len(ex.middle.strip()) > 10 for ex in every)  # the limit removed lines that were there


def test_expression_examples_are_whole_expressions_within_one_line_of_a_piece() -> None:
    pieces = {p for doc in DOCS for p in chunk_lines(doc, 80)}
    examples = infill_examples(DOCS, 50, seed=1, piece_chars=80, min_chars=1, max_chars=5, middle="expression")
    assert len(examples) == len(pieces)  # every piece has a short expression: one cut from each
    for ex in examples:
        assert ex.prefix + ex.middle + ex.suffix in pieces
        assert "\n" not in ex.middle and 1 <= len(ex.middle.strip()) <= 5
        ast.parse(ex.middle, mode="eval")  # a whole expression on its own
    middles = {ex.middle for ex in examples}
    assert (
        any(m.isidentifier() for m in middles) and any(m.isdigit() for m in middles) and any("*" in m for m in middles)
    )
    with pytest.raises(ConfigError, match="infill.middle='token' is not one of"):
        infill_examples(DOCS, 5, middle="token")


def test_a_document_that_does_not_parse_gives_no_expression() -> None:
    assert infill_examples(["def f(:\n    return 1\n\n"], 5, min_chars=1, middle="expression") == []


def test_exact_match_is_the_share_of_first_lines_equal_to_the_middle(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tokenizer()
    examples = infill_examples(DOCS, 8, seed=2, piece_chars=80)
    replying(
        monkeypatch,
        tok,
        [ex.middle + "    extra line\n" if i % 2 == 0 else "    wrong\n" for i, ex in enumerate(examples)],
    )
    score, lines = infill_exact_match(None, tok, examples, "psm", batch_size=3)  # type: ignore[arg-type]
    assert score == 0.5  # 4 of 8 right; the second line a right reply goes on with does not count against it
    assert lines[0] == examples[0].middle and lines[1] == "    wrong\n"

    expressions = infill_examples(DOCS, 4, seed=2, piece_chars=80, min_chars=1, middle="expression")
    replying(
        monkeypatch, tok, [ex.middle + "\n    more" if i < 3 else ex.middle + ")" for i, ex in enumerate(expressions)]
    )
    score, lines = infill_exact_match(None, tok, expressions, "spm")  # type: ignore[arg-type]
    assert score == 0.75  # the reply is cut at its line end; a middle that goes on in the same line is wrong
    assert lines[3] == expressions[3].middle + ")"


def test_starts_with_credits_the_right_text_without_the_right_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    tok = tokenizer()
    expressions = infill_examples(DOCS, 3, seed=4, piece_chars=80, min_chars=1, middle="expression")
    replying(monkeypatch, tok, [ex.middle + tail for ex, tail in zip(expressions, ["", ")", ""])] + ["zz"] * 3)
    monkeypatch.setattr(infill_eval, "middle_loss", lambda *args: 0.0)
    assert not any(ex.middle.startswith("zz") for ex in expressions)  # the SPM replies are all wrong
    results = evaluate_infill(None, tok, DOCS, n=3, piece_chars=80, min_chars=1, seed=4, middle="expression")  # type: ignore[arg-type]
    # PSM: right, right then ")" (no stop), right; SPM: "zz" three times
    assert results["unit"] == "expression" and results["n"] == 3
    assert results["exact_match/psm"] == pytest.approx(2 / 3) and results["starts_with/psm"] == 1.0
    assert results["exact_match/spm"] == 0.0 and results["starts_with/spm"] == 0.0


def test_needs_the_sentinels_and_an_eos() -> None:
    with pytest.raises(ConfigError, match="needs a tokenizer with the FIM tokens"):
        infill_exact_match(None, tokenizer(("<|bos|>", "<|eos|>")), infill_examples(DOCS, 2), "psm")  # type: ignore[arg-type]
    tok = tokenizer()
    eos = tok.eos_id
    assert eos is not None
    stream = tok.encode("cut in two\n") + [eos] + tok.encode(DOCS[0]) + [eos] + tok.encode(DOCS[1])
    assert validation_documents(stream, tok) == [DOCS[0], DOCS[1]]  # the first, cut by the split, is left out


def test_middle_loss_is_the_mean_nll_of_the_middle_tokens_after_the_prompt() -> None:
    tok = tokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=128, vocab_size=tok.vocab_size))
    examples = infill_examples(DOCS, 3, seed=3, piece_chars=80)
    for order in ("psm", "spm", "l2r"):
        total, count = 0.0, 0
        for ex in examples:  # by hand: log-softmax over the whole sequence, the middle's positions picked out
            context = tok.encode(infill_prompt(ex, order), allow_special=True)
            middle = tok.encode(ex.middle)
            ids = torch.tensor([context + middle])
            logprobs = torch.log_softmax(model(ids)[0][0], dim=-1)
            for j, token in enumerate(middle):
                total -= logprobs[len(context) + j - 1, token].item()
            count += len(middle)
        assert middle_loss(model, tok, examples, order) == pytest.approx(total / count, rel=1e-5)
    assert infill_prompt(examples[0], "l2r") == examples[0].prefix


def test_the_report_prints_each_score_and_what_was_infilled(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from minigpt.evaluation.report import show

    infill = {"n": 3, "unit": "expression", "exact_match/psm": 1 / 3, "starts_with/psm": 2 / 3, "middle_loss/psm": 2.5}
    infill["example/psm"] = {"middle": "x", "written": "x"}
    show({"infill": infill}, tmp_path)
    printed = " ".join(capsys.readouterr().out.split())
    assert (
        "infill (3 held-out expressions): exact_match/psm 0.333, starts_with/psm 0.667, middle_loss/psm 2.500"
        in printed
    )
