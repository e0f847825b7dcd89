"""Speech data: splits hold out voices and a noise level; transcripts per language; a user's WAV folder; rows carry
exactly one placeholder per encoder position and train only the transcript."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt.audio.wav import write_wav
from minigpt.data.speech.datamodule import SpeechDataModule
from minigpt.data.speech.digits import DIGIT_WORDS, SpokenDigits
from minigpt.data.speech.example import SpeechExample
from minigpt.data.speech.wav_folder import WavFolder
from minigpt.losses.lm import IGNORE_INDEX
from minigpt.tokenizer.build import byte_tokenizer
from minigpt.tokenizer.chat import AUDIO_TOKEN
from minigpt.utils.errors import ConfigError, DataError


def test_training_never_hears_the_held_out_voices_or_noise_level():
    source = SpokenDigits(languages=["en", "zh", "fr"], transcript="words")
    train = [source.utterance("train", i) for i in range(300)]
    assert not {r.voice for r, *_ in train} & set(source.held_out_voices)
    assert source.held_out_snr not in {r.snr_db for r, *_ in train}
    val = [source.utterance("val", i) for i in range(300)]
    held_voice = [r for r, _, _, hv, _ in val if hv]
    assert 100 < len(held_voice) < 200 and {r.voice for r in held_voice} <= set(source.held_out_voices)
    assert all(r.snr_db == source.held_out_snr for r, _, _, _, hn in val if hn)
    for recipe, text, language, *_ in val:  # each clip speaks and is transcribed in its own language
        assert recipe.text == text and all(w in DIGIT_WORDS[language] for w in text.split())
        assert recipe.language == {"zh": "cmn"}.get(language, language)
    assert source.utterance("val", 7) == source.utterance("val", 7)  # a recipe per (seed, split, index)
    assert SpokenDigits().utterance("train", 0)[1].replace(" ", "").isdigit()  # transcript: digits
    with pytest.raises(ConfigError, match="held out means unseen"):
        SpokenDigits(voices=["m1"], held_out_voices=["m1"])
    with pytest.raises(ConfigError, match="data.languages"):
        SpokenDigits(languages=["xx"])


def test_wav_folder_reads_transcripts_and_resamples(tmp_path):
    rate = 8_000
    lines = []
    for i in range(10):
        write_wav(tmp_path / f"c{i}.wav", 0.3 * np.sin(np.arange(rate) * (i + 1) / 20), rate)
        lines.append(f"c{i}.wav\tclip {i}\ten")
    (tmp_path / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = WavFolder(str(tmp_path), val_fraction=0.2)
    val, test, train = (source.examples(s, None) for s in ("val", "test", "train"))
    assert (len(val), len(test), len(train)) == (2, 2, 6)
    assert len({ex.text for ex in val + test + train}) == 10
    assert len(train[0].audio) == 16_000 and train[0].language == "en"
    (tmp_path / "transcripts.tsv").write_text("c0.wav\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1"):
        WavFolder(str(tmp_path))
    (tmp_path / "transcripts.tsv").unlink()
    with pytest.raises(DataError, match="has no transcript"):
        WavFolder(str(tmp_path))


class Fixed:
    """Two given clips in every split."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def examples(self, split: str, n: int | None) -> list[SpeechExample]:
        clip = 0.1 * np.random.default_rng(0).standard_normal(int(self.seconds * 16_000)).astype(np.float32)
        return [SpeechExample(clip, "4 7"), SpeechExample(clip[: len(clip) // 2], "四 七", "zh")]


def test_rows_hold_one_placeholder_per_position_and_train_only_the_transcript():
    tokenizer = byte_tokenizer(texts=lambda: [])
    dm = SpeechDataModule({"fixed": Fixed(0.9)}, max_seconds=1.0, num_train=2, num_val=2, seq_len=40, batch_size=2)
    dm.attach_tokenizer(tokenizer)
    batch = next(iter(dm.val_dataloader()))
    audio_id = tokenizer.special_id(AUDIO_TOKEN)
    assert dm.config.num_tokens == 13  # 1 s = 100 frames → 50 → 25 → 13
    assert ((batch["input_ids"] == audio_id).sum(dim=1) == 13).all()
    assert batch["audio"].shape == (2, 80, 100)
    for row, text in zip(range(2), batch["text"]):
        trained = batch["targets"][row][batch["targets"][row] != IGNORE_INDEX].tolist()
        assert tokenizer.decode(trained[:-1]) == text  # the transcript, then <|end|>
        n = int(batch["ctc_lengths"][row])
        assert tokenizer.decode(batch["ctc_targets"][row, :n].tolist()) == text
    assert batch["language"] == ["en", "zh"]
    long = SpeechDataModule({"fixed": Fixed(1.2)}, max_seconds=1.0, num_train=2, num_val=2, seq_len=40)
    long.attach_tokenizer(tokenizer)
    with pytest.raises(ConfigError, match="lasts 1.20 s, longer than speech.max_seconds=1.0"):
        long.prepare()
