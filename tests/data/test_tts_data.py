"""`TTSDataModule`: the digit corpus's recipes, one speaker, clean; frames and durations that add up; cached."""

from __future__ import annotations

import pytest
import torch

from minigpt.data.speech import tts
from minigpt.data.speech.digits import SpokenDigits
from minigpt.data.speech.tts import TTSDataModule, transcript_words
from minigpt.tokenizer.char import CharTokenizer
from minigpt.utils.errors import ConfigError


def test_rows_are_one_clean_speaker_with_durations_that_add_up(tmp_path, monkeypatch) -> None:
    source = SpokenDigits(voices=["m3", "f1"], held_out_voices=["m4"], max_digits=3, cache_dir=str(tmp_path))
    dm = TTSDataModule({"digits": source}, num_train=5, num_val=3, seq_len=16)
    recipes = dm.recipes("val")
    assert {(r.voice, r.rate, r.pitch, r.snr_db) for r, _, _ in recipes} == {("m3", 170, 50, None)}
    texts = [t for _, t, _ in recipes]
    assert texts == [t for _, t, *_ in (source.utterance("val", i) for i in range(3))]  # the source's own strings
    dm.attach_tokenizer(CharTokenizer.train("".join(dm.documents())))
    rows = dm.prepare()["val"]
    for (ids, mel, durations), text in zip(rows, texts):
        assert len(ids) == len(durations) == len(text) and mel.shape[1] == 80
        assert int(durations.sum()) == mel.shape[0] > 20  # every frame belongs to one character
    batch = next(iter(dm.val_dataloader()))
    assert (
        batch["mel"].dtype == torch.float32
        and batch["durations"].sum(1).tolist() == batch["frame_valid"].sum(1).tolist()
    )

    # A second data module reads clips and word starts from the cache: espeak is not called again.
    monkeypatch.setattr(tts, "espeak", lambda: pytest.fail("synthesised again"))
    again = TTSDataModule({"digits": source}, num_train=5, num_val=3, seq_len=16)
    again.attach_tokenizer(dm.tokenizer)
    assert all(torch.equal(a[2], b[2]) for a, b in zip(again.prepare()["val"], rows))


def test_words_map_onto_the_transcript_and_bad_pairings_are_refused(tmp_path) -> None:
    assert transcript_words("4 17", "four seventeen", [(1, 0), (6, 300)]) == [(1, 0), (3, 300)]
    with pytest.raises(ConfigError, match="one transcript word per spoken word"):
        transcript_words("4 7", "four", [(1, 0)])
    mixed = SpokenDigits(languages=["en", "fr"], cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="one language"):
        TTSDataModule({"digits": mixed}, num_train=2, num_val=2).recipes("train")
