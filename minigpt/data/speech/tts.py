"""`TTSDataModule`: the speech corpus turned around for `stage=tts` — text in, one speaker's log-mel frames out.

It is `SpeechDataModule` with the same options and the same sources (`data=speech/digits` serves both stages:
the data config's `_target_` follows `stage.speech_data`), and only what a row is differs:

* the texts are the transcripts of the source's own split recipes (`SynthesisedSource.utterance(split, i)`), so train
  and validation hold different strings, as for recognition;
* every text is spoken by ONE speaker — the source's first training voice at the middle of its rate and pitch
  ranges, without noise. A model without a speaker input that learns from several voices with an L1 loss
  predicts their average spectrum (blurred harmonics); one voice keeps the target a function of the text;
* the reference frames are the clip's log-mel features (`minigpt.audio.features.log_mel`, unpadded) as
  (frames, n_mels), and each character's duration comes from espeak's word starts (`tts_rows.char_durations`).

espeak reports the word starts while it synthesises; they are cached beside the clips (`speech/words/<key>.json`,
the clip's own cache key), so a second run neither synthesises nor aligns again.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import torch

from minigpt.audio.features import MelConfig, log_mel
from minigpt.data.assets import cache_root
from minigpt.data.speech.corpus import Utterance, clean_clip
from minigpt.data.speech.datamodule import SpeechDataModule
from minigpt.data.speech.espeak import espeak
from minigpt.data.speech.synthesised import SynthesisedSource
from minigpt.data.speech.tts_rows import TTSRow, char_durations, collate_tts
from minigpt.utils.errors import ConfigError
from minigpt.utils.io import atomic_write_text


def word_starts(utterance: Utterance, cache_dir: str | Path | None = None) -> list[tuple[int, int]]:
    """espeak's (1-based character position, start in ms) of each word of the clean `utterance`, cached."""
    path = cache_root(cache_dir) / "speech" / "words" / f"{utterance.cache_key()}.json"
    if path.exists():
        return [(int(p), int(ms)) for p, ms in json.loads(path.read_text())]
    spoken = espeak().synthesize(utterance.text, utterance.language, utterance.voice, utterance.rate, utterance.pitch)
    atomic_write_text(path, json.dumps(spoken.words))
    return spoken.words


def transcript_words(text: str, spoken: str, words: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The word starts of the spoken text moved onto the transcript, word k onto word k ("four seven" → "4 7")."""
    if len(words) != len(spoken.split()) or len(text.split()) != len(words):
        raise ConfigError(
            f"espeak spoke {spoken!r} as {len(words)} words but its transcript {text!r} has {len(text.split())}; "
            "stage=tts needs one transcript word per spoken word (use data.transcript=digits or words)."
        )
    starts, position = [], 0
    for word in text.split():
        position = text.index(word, position)
        starts.append(position + 1)
        position += len(word)
    return [(start, ms) for start, (_, ms) in zip(starts, words)]


def collate_float_mel(rows: list[TTSRow], pad_id: int) -> dict[str, Any]:
    """`collate_tts` with the (float16-stored) frames back in float32."""
    batch = collate_tts(rows, pad_id)
    batch["mel"] = batch["mel"].float()
    return batch


class TTSDataModule(SpeechDataModule):
    """`SpeechDataModule`'s options and sources; rows of (characters, reference log-mel frames, durations)."""

    collate_rows = staticmethod(collate_float_mel)  # type: ignore[assignment]  # its rows are TTSRows

    @property
    def n_mels(self) -> int:
        """Mel bands of the reference frames."""
        return self.config.n_mels

    def mel_config(self) -> MelConfig:
        """The front end the reference frames are computed with (Whisper's, with this data's mel bands)."""
        return MelConfig(sample_rate=self.config.sample_rate, hop_length=self.config.hop_length, n_mels=self.n_mels)

    def recipes(self, split: str) -> list[tuple[Utterance, str, str | None]]:
        """(clean one-speaker recipe, transcript, its source's cache folder) of each example of `split`."""
        n = self.num_train if split == "train" else self.num_val
        out = []
        for name, source in self.sources.items():
            if not isinstance(source, SynthesisedSource):
                raise ConfigError(
                    f"data.sources.{name} holds recordings, not recipes; stage=tts learns from synthesised "
                    "speech: use data=speech/digits (or speech/numbers, speech/sentences)."
                )
            if n is None:
                raise ConfigError("data.num_train is null; give a number of utterances (e.g. data.num_train=2000).")
            if len(getattr(source, "languages", ())) > 1 and getattr(source, "transcript", None) == "digits":
                raise ConfigError(
                    f"data.languages={source.languages} with digit transcripts: the same text would have to be "
                    "spoken in several languages; stage=tts takes one language (data.languages=[en])."
                )
            voice, rate, pitch = source.voices[0], sum(source.rate) // 2, sum(source.pitch) // 2
            for i in range(n):
                recipe, text, *_ = source.utterance(split, i)
                speaker = dataclasses.replace(recipe, voice=voice, rate=rate, pitch=pitch, snr_db=None)
                out.append((speaker, text, source.cache_dir))
        return out

    def documents(self) -> list[str]:
        """The transcripts of the training and validation utterances (the characters the model reads)."""
        return [text for split in ("train", "val") for _, text, _ in self.recipes(split)]

    def row(self, recipe: Utterance, text: str, cache_dir: str | None) -> TTSRow:
        """Characters, reference frames (F, n_mels) and per-character durations of one utterance."""
        assert self.tokenizer is not None and self.seq_len is not None
        ids = self.tokenizer.encode(text)
        if len(ids) != len(text):
            raise ConfigError(
                f"The tokenizer reads {text!r} as {len(ids)} tokens, not one per character; stage=tts gives "
                "durations to characters: use tokenizer=char."
            )
        if len(ids) > self.seq_len:
            raise ConfigError(
                f"The text {text[:40]!r} has {len(ids)} characters, more than the encoder's context "
                f"{self.seq_len}; raise model.block_size or use shorter texts (data.max_digits)."
            )
        clip = clean_clip(recipe, cache_dir)
        mel = log_mel(torch.from_numpy(clip), self.mel_config()).T.contiguous()  # (F, n_mels)
        words = transcript_words(text, recipe.text, word_starts(recipe, cache_dir))
        frame_ms = 1000.0 * self.config.hop_length / self.config.sample_rate
        durations = char_durations(text, words, mel.shape[0], frame_ms)
        return torch.tensor(ids), mel.half(), torch.tensor(durations)

    def prepare(self) -> dict[str, list[TTSRow]]:  # type: ignore[override]
        """Synthesise (or read from the cache), featurise and align train and val once."""
        if self.splits is not None:
            return self.splits  # type: ignore[return-value]
        if self.tokenizer is None:
            raise RuntimeError("TTSDataModule needs attach_tokenizer(...) before use.")
        if self.seq_len is None:
            raise ConfigError("data.seq_len is unset; set it or train with stage=tts (which sets it).")
        splits = {split: [self.row(*recipe) for recipe in self.recipes(split)] for split in ("train", "val")}
        random.Random(self.seed).shuffle(splits["train"])
        self.splits = splits  # type: ignore[assignment]
        return splits
