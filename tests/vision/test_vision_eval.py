"""Caption scoring: token F1 (SQuAD's bag-of-words F1) gives partial credit where exact-match gives none."""

import pytest

from minigpt.evaluation.vision import token_f1


def test_caption_token_f1_gives_partial_credit():
    assert token_f1("red circle, blue square", "red circle, blue square") == 1.0
    # 3 of 4 words shared: P = R = 3/4
    assert token_f1("red circle, blue circle", "red circle, blue square") == pytest.approx(0.75)
    assert token_f1("a handwritten 7", "a handwritten 1") == pytest.approx(2 / 3)
    assert token_f1("", "red circle") == 0.0
